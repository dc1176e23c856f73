import { useCallback, useState } from "react";
import { Link, useParams } from "react-router";

import { useApi } from "../api/context";
import { useLoad } from "../api/load";
import { CampaignActions } from "../campaigns/CampaignActions";
import { CountsTable, DryRunPanel } from "../campaigns/DryRunPanel";
import { PreviewPanel } from "../campaigns/PreviewPanel";
import { parseCampaignId } from "../campaigns/campaignId";
import { Empty, LoadView } from "../components/states";
import {
  CampaignStatusSchema,
  type Campaign,
} from "../gen/retain/comms/v1/comms_pb";
import { ChannelSchema, PurposeSchema } from "../gen/retain/type/v1/channel_pb";
import { enumLabel } from "../format/enums";
import { formatMoney } from "../format/money";
import { formatPercent } from "../format/numbers";
import { formatClock, formatTime } from "../format/time";

export function CampaignDetailPage() {
  const campaignId = parseCampaignId(useParams().campaignId);
  if (campaignId === null) {
    return <Empty>This address does not name a campaign.</Empty>;
  }
  // A new id starts with fresh state.
  return <CampaignDetail key={campaignId.toString()} campaignId={campaignId} />;
}

function CampaignDetail({ campaignId }: { campaignId: bigint }) {
  const { comms } = useApi();
  const [updated, setUpdated] = useState<Campaign | null>(null);
  const loaded = useLoad(
    useCallback(
      async (signal: AbortSignal) => {
        const { campaign } = await comms.getCampaign(
          { campaignId },
          { signal },
        );
        return campaign;
      },
      [comms, campaignId],
    ),
  );

  return (
    <LoadView
      state={loaded}
      label="the campaign"
      isEmpty={(campaign) => campaign === undefined}
      empty="The service returned no campaign."
    >
      {(fetched) => {
        const campaign = updated ?? fetched;
        if (campaign === undefined) {
          return null;
        }
        const id = campaignId.toString();
        return (
          <>
            <h1>
              {campaign.spec?.name ?? `Campaign ${id}`}{" "}
              <span className="badge">
                {enumLabel(CampaignStatusSchema, campaign.status)}
              </span>
            </h1>
            {campaign.statusReason !== "" && (
              <p className="warning">{campaign.statusReason}</p>
            )}
            <p>
              <Link to={`/campaigns/${id}/messages`}>Messages</Link>{" "}
              <Link to={`/campaigns/${id}/results`}>ROI</Link>
            </p>
            <CampaignActions campaign={campaign} onChange={setUpdated} />
            <CampaignSummary campaign={campaign} />
            {campaign.counts !== undefined && (
              <section>
                <h2>Recipients at launch</h2>
                <CountsTable counts={campaign.counts} />
              </section>
            )}
            <DryRunPanel campaignId={campaignId} />
            <PreviewPanel campaignId={campaignId} />
          </>
        );
      }}
    </LoadView>
  );
}

function CampaignSummary({ campaign }: { campaign: Campaign }) {
  const spec = campaign.spec;
  const window = spec?.sendWindow;
  const cap = spec?.frequencyCap;
  const rows: [string, string][] = [
    [
      "Churn probability threshold",
      spec ? String(spec.minChurnProbability) : "—",
    ],
    ["Holdout share", spec ? formatPercent(spec.holdoutShare) : "—"],
    ["Budget", formatMoney(spec?.budget)],
    ["Spend so far", formatMoney(campaign.spend)],
    ["Reserved for unsent messages", formatMoney(campaign.reserved)],
    [
      "Send window (Nairobi)",
      window
        ? `${formatClock(window.startMinute)}–${formatClock(window.endMinute)}`
        : "Default",
    ],
    [
      "Frequency cap",
      cap === undefined
        ? "Default"
        : cap.maxMessages === 0
          ? "No cap"
          : `${cap.maxMessages} per ${cap.periodDays} days`,
    ],
    ["Channel", spec ? enumLabel(ChannelSchema, spec.channel) : "—"],
    ["Purpose", spec ? enumLabel(PurposeSchema, spec.purpose) : "—"],
    ["Offer", spec?.offer || "None"],
    ["Max SMS parts", spec ? String(spec.maxSegments || 1) : "—"],
    ["Brand name", spec?.brandName || "—"],
    [
      "Created by",
      `${campaign.createdBy} on ${formatTime(campaign.createTime)}`,
    ],
    ["Approved by", campaign.approvedBy || "—"],
    ["Launched", formatTime(campaign.launchTime)],
    ["Finished", formatTime(campaign.finishTime)],
  ];
  return (
    <section>
      <h2>Settings</h2>
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
