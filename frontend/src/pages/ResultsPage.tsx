import { useCallback } from "react";
import { Link, useParams } from "react-router";

import { useApi } from "../api/context";
import { useLoad } from "../api/load";
import { parseCampaignId } from "../campaigns/campaignId";
import { Empty, LoadView } from "../components/states";
import type { GetCampaignResultsResponse } from "../gen/retain/comms/v1/comms_pb";
import { formatMoney } from "../format/money";
import { formatCount, formatPercent, formatPoints } from "../format/numbers";

export function ResultsPage() {
  const campaignId = parseCampaignId(useParams().campaignId);
  if (campaignId === null) {
    return <Empty>This address does not name a campaign.</Empty>;
  }
  return <Results key={campaignId.toString()} campaignId={campaignId} />;
}

function Results({ campaignId }: { campaignId: bigint }) {
  const { comms } = useApi();
  const results = useLoad(
    useCallback(
      (signal: AbortSignal) =>
        comms.getCampaignResults({ campaignId }, { signal }),
      [comms, campaignId],
    ),
  );
  const id = campaignId.toString();
  return (
    <>
      <h1>Return on campaign {id}</h1>
      <p>
        <Link to={`/campaigns/${id}`}>Back to the campaign</Link>
      </p>
      <p className="muted">
        Retention counts customers active between launch and now. Treated
        customers include those whose message was suppressed (intention to
        treat).
      </p>
      <LoadView
        state={results}
        label="results"
        isEmpty={(response) =>
          response.treatedCount === 0n && response.controlCount === 0n
        }
        empty="The campaign has no treated or control customers yet; launch it first."
      >
        {(response) => <ResultsTable results={response} />}
      </LoadView>
    </>
  );
}

/** Says whether the 95% interval excludes zero, in plain words. */
function verdict(results: GetCampaignResultsResponse): string {
  if (results.upliftCiLow > 0) {
    return "The campaign raised retention (the 95% interval is above zero).";
  }
  if (results.upliftCiHigh < 0) {
    return "The campaign lowered retention (the 95% interval is below zero).";
  }
  return "The difference is not significant at 95%: the interval includes zero.";
}

function ResultsTable({ results }: { results: GetCampaignResultsResponse }) {
  const rows: [string, string][] = [
    ["Treated customers", formatCount(results.treatedCount)],
    ["Control customers", formatCount(results.controlCount)],
    ["Retention, treated", formatPercent(results.retentionTreated)],
    ["Retention, control", formatPercent(results.retentionControl)],
    ["Uplift", formatPoints(results.uplift)],
    [
      "Uplift, 95% confidence interval",
      `${formatPoints(results.upliftCiLow)} to ${formatPoints(results.upliftCiHigh)}`,
    ],
    [
      "Minimum detectable effect (80% power)",
      formatPoints(results.minimumDetectableEffect),
    ],
    ["Spend", formatMoney(results.spend)],
    ["Revenue retained", formatMoney(results.revenueRetained)],
    ["Net revenue", formatMoney(results.netRevenue)],
  ];
  return (
    <section>
      <p>
        <strong>{verdict(results)}</strong>
      </p>
      <table className="counts">
        <tbody>
          {rows.map(([label, value]) => (
            <tr key={label}>
              <th scope="row">{label}</th>
              <td>{value}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
