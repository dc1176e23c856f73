import { useAction } from "../api/action";
import { useApi } from "../api/context";
import { ErrorNotice } from "../components/states";
import type {
  CampaignCounts,
  DryRunCampaignResponse,
} from "../gen/retain/comms/v1/comms_pb";
import { formatMoney } from "../format/money";
import { formatCount } from "../format/numbers";

const SAMPLE_SIZE = 10;

/** Shows who would be messaged now and the estimated cost, without sending anything. */
export function DryRunPanel({ campaignId }: { campaignId: bigint }) {
  const { comms } = useApi();
  const [state, run] = useAction<DryRunCampaignResponse>();
  const dryRun = () =>
    comms.dryRunCampaign({ campaignId, sampleSize: SAMPLE_SIZE });

  return (
    <section>
      <h2>Dry run</h2>
      <button
        type="button"
        disabled={state.status === "busy"}
        onClick={() => void run(dryRun)}
      >
        {state.status === "busy" ? "Running…" : "Dry run"}
      </button>
      {state.status === "failed" && <ErrorNotice error={state.error} />}
      {state.status === "done" && (
        <>
          {state.data.counts !== undefined && (
            <CountsTable counts={state.data.counts} />
          )}
          <p>
            Estimated cost:{" "}
            <strong>{formatMoney(state.data.estimatedCost)}</strong>
          </p>
          {state.data.sampleCustomerIds.length > 0 && (
            <p className="muted">
              Sample recipients:{" "}
              {state.data.sampleCustomerIds
                .map((id) => id.toString())
                .join(", ")}
            </p>
          )}
        </>
      )}
    </section>
  );
}

/** Renders the recipient selection counts of a dry run or a launched campaign. */
export function CountsTable({ counts }: { counts: CampaignCounts }) {
  const rows: [string, bigint][] = [
    ["At risk", counts.atRiskCount],
    ["Dropped: no consent", counts.noConsentCount],
    ["Dropped: frequency cap", counts.cappedCount],
    ["Eligible", counts.eligibleCount],
    ["Treated", counts.treatedCount],
    ["Held out (control)", counts.heldOutCount],
    ["Suppressed by budget or customer cap", counts.suppressedCount],
  ];
  return (
    <table className="counts">
      <tbody>
        {rows.map(([label, count]) => (
          <tr key={label}>
            <th scope="row">{label}</th>
            <td>{formatCount(count)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
