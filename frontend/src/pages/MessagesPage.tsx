import { useCallback, useState } from "react";
import { Link, useParams } from "react-router";

import { useApi } from "../api/context";
import { useLoad } from "../api/load";
import { parseCampaignId } from "../campaigns/campaignId";
import { Empty, LoadView } from "../components/states";
import {
  MessageState,
  MessageStateSchema,
} from "../gen/retain/comms/v1/comms_pb";
import { enumChoices, enumLabel } from "../format/enums";
import { formatMoney } from "../format/money";
import { formatCount } from "../format/numbers";
import { formatTime } from "../format/time";

const PAGE_SIZE = 50;

/** States of messages that will not be delivered. Their rows are highlighted. */
const FAILURE_STATES = new Set([
  MessageState.FAILED,
  MessageState.SUPPRESSED,
  MessageState.DROPPED,
  MessageState.DELIVERY_UNKNOWN,
]);

export function MessagesPage() {
  const campaignId = parseCampaignId(useParams().campaignId);
  if (campaignId === null) {
    return <Empty>This address does not name a campaign.</Empty>;
  }
  return <Messages key={campaignId.toString()} campaignId={campaignId} />;
}

function Messages({ campaignId }: { campaignId: bigint }) {
  const { comms } = useApi();
  const [state, setState] = useState(MessageState.UNSPECIFIED);
  // Page tokens from the first page to the current one, which is last.
  const [tokens, setTokens] = useState<string[]>([""]);
  const pageToken = tokens[tokens.length - 1] ?? "";

  const stats = useLoad(
    useCallback(
      (signal: AbortSignal) =>
        comms.getMessageStats({ campaignId }, { signal }),
      [comms, campaignId],
    ),
  );
  const messages = useLoad(
    useCallback(
      (signal: AbortSignal) =>
        comms.listMessages(
          { campaignId, state, pageSize: PAGE_SIZE, pageToken },
          { signal },
        ),
      [comms, campaignId, state, pageToken],
    ),
  );

  const id = campaignId.toString();
  return (
    <>
      <h1>Messages of campaign {id}</h1>
      <p>
        <Link to={`/campaigns/${id}`}>Back to the campaign</Link>
      </p>

      <section>
        <h2>By state</h2>
        <LoadView
          state={stats}
          label="message counts"
          isEmpty={(response) => response.counts.length === 0}
          empty="The campaign has no messages yet."
        >
          {(response) => (
            <>
              <table className="counts">
                <tbody>
                  {response.counts.map((count) => (
                    <tr key={count.state}>
                      <th scope="row">
                        {enumLabel(MessageStateSchema, count.state)}
                      </th>
                      <td>{formatCount(count.messageCount)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              <p>
                Spend: <strong>{formatMoney(response.spend)}</strong>
              </p>
            </>
          )}
        </LoadView>
      </section>

      <section>
        <h2>Ledger</h2>
        <label htmlFor="state-filter">State</label>{" "}
        <select
          id="state-filter"
          value={state}
          onChange={(event) => {
            setState(Number(event.target.value));
            setTokens([""]);
          }}
        >
          <option value={MessageState.UNSPECIFIED}>All states</option>
          {enumChoices(MessageStateSchema).map((choice) => (
            <option key={choice.value} value={choice.value}>
              {choice.label}
            </option>
          ))}
        </select>
        <LoadView
          state={messages}
          label="messages"
          isEmpty={(page) => page.messages.length === 0}
          empty={
            state === MessageState.UNSPECIFIED
              ? "The campaign has no messages yet."
              : `No messages are ${enumLabel(MessageStateSchema, state).toLowerCase()}.`
          }
        >
          {(page) => (
            <>
              <table>
                <thead>
                  <tr>
                    <th>Message</th>
                    <th>Customer</th>
                    <th>State</th>
                    <th>SMS parts</th>
                    <th>Cost</th>
                    <th>Provider status</th>
                    <th>Reason</th>
                    <th>Updated</th>
                  </tr>
                </thead>
                <tbody>
                  {page.messages.map((message) => (
                    <tr
                      key={message.messageId.toString()}
                      className={
                        FAILURE_STATES.has(message.state) ? "failed" : undefined
                      }
                    >
                      <td>{message.messageId.toString()}</td>
                      <td>{message.customerId.toString()}</td>
                      <td>{enumLabel(MessageStateSchema, message.state)}</td>
                      <td>{message.segments}</td>
                      <td>
                        {message.cost !== undefined
                          ? formatMoney(message.cost, 4)
                          : `${formatMoney(message.estimatedCost, 4)} (estimated)`}
                      </td>
                      <td>{message.providerStatus || "—"}</td>
                      <td>{message.reason || "—"}</td>
                      <td>{formatTime(message.updateTime)}</td>
                    </tr>
                  ))}
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
