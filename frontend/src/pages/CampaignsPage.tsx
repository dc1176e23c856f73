import { useCallback, useState } from "react";
import { Link } from "react-router";

import { useApi, useSession } from "../api/context";
import { useLoad } from "../api/load";
import { ProviderBalance } from "../campaigns/ProviderBalance";
import { StopAllCampaigns } from "../campaigns/StopAllCampaigns";
import { LoadView } from "../components/states";
import { CampaignStatusSchema } from "../gen/retain/comms/v1/comms_pb";
import { Role } from "../gen/retain/user/v1/user_pb";
import { enumLabel } from "../format/enums";
import { formatMoney } from "../format/money";
import { formatTime } from "../format/time";

const PAGE_SIZE = 25;

export function CampaignsPage() {
  const { comms } = useApi();
  const session = useSession();
  // Page tokens from the first page to the current one, which is last.
  const [tokens, setTokens] = useState<string[]>([""]);
  const pageToken = tokens[tokens.length - 1] ?? "";

  const campaigns = useLoad(
    useCallback(
      (signal: AbortSignal) =>
        comms.listCampaigns({ pageSize: PAGE_SIZE, pageToken }, { signal }),
      [comms, pageToken],
    ),
  );

  return (
    <>
      <h1>Campaigns</h1>
      <section className="cards">
        <ProviderBalance />
        <StopAllCampaigns onStopped={campaigns.reload} />
      </section>

      <section>
        {session?.admin.role === Role.ADMIN && (
          <p>
            <Link to="/campaigns/new" className="button">
              New campaign
            </Link>
          </p>
        )}
        <LoadView
          state={campaigns}
          label="campaigns"
          isEmpty={(page) => page.campaigns.length === 0 && tokens.length === 1}
          empty="No campaigns yet."
        >
          {(page) => (
            <>
              <table>
                <thead>
                  <tr>
                    <th>Id</th>
                    <th>Name</th>
                    <th>Status</th>
                    <th>Threshold</th>
                    <th>Budget</th>
                    <th>Spend</th>
                    <th>Created by</th>
                    <th>Created</th>
                    <th />
                  </tr>
                </thead>
                <tbody>
                  {page.campaigns.map((campaign) => {
                    const id = campaign.campaignId.toString();
                    return (
                      <tr key={id}>
                        <td>{id}</td>
                        <td>
                          <Link to={`/campaigns/${id}`}>
                            {campaign.spec?.name ?? "—"}
                          </Link>
                        </td>
                        <td>
                          {enumLabel(CampaignStatusSchema, campaign.status)}
                        </td>
                        <td>{campaign.spec?.minChurnProbability ?? "—"}</td>
                        <td>{formatMoney(campaign.spec?.budget)}</td>
                        <td>{formatMoney(campaign.spend)}</td>
                        <td>{campaign.createdBy}</td>
                        <td>{formatTime(campaign.createTime)}</td>
                        <td>
                          <Link to={`/campaigns/${id}/messages`}>Messages</Link>{" "}
                          <Link to={`/campaigns/${id}/results`}>ROI</Link>
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
              <div className="pager">
                <button
                  type="button"
                  disabled={tokens.length <= 1}
                  onClick={() => setTokens(tokens.slice(0, -1))}
                >
                  Previous
                </button>
                <button
                  type="button"
                  disabled={page.nextPageToken === ""}
                  onClick={() => setTokens([...tokens, page.nextPageToken])}
                >
                  Next
                </button>
              </div>
            </>
          )}
        </LoadView>
      </section>
    </>
  );
}
