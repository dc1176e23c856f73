import { Code, ConnectError } from "@connectrpc/connect";
import { useCallback, useState, type FormEvent } from "react";

import type { Api } from "../api/api";
import { useApi } from "../api/context";
import { useLoad } from "../api/load";
import { LoadView } from "../components/states";
import {
  ScoreOrder,
  type Score,
} from "../gen/retain/inference/v1/inference_pb";
import type { Customer } from "../gen/retain/user/v1/user_pb";
import { formatDays, formatPercent } from "../format/numbers";

const PAGE_SIZE = 50;
const DEFAULT_MIN_PROBABILITY = 0.5;

/** A score with the customer's profile, or why the profile is missing. */
interface Row {
  score: Score;
  customer?: Customer;
  customerError?: string;
}

interface ScorePage {
  rows: Row[];
  nextPageToken: string;
  scoringRunId: bigint;
}

type SortOrder = "highest" | "lowest";

// The service sorts the whole scoring run, so the order continues across pages.
const SERVER_ORDER: Record<SortOrder, ScoreOrder> = {
  highest: ScoreOrder.CHURN_PROBABILITY_DESC,
  lowest: ScoreOrder.CHURN_PROBABILITY_ASC,
};

/** Fetches each score's customer, keeping rows whose customer failed to load. */
async function withCustomers(
  api: Api,
  scores: Score[],
  signal: AbortSignal,
): Promise<Row[]> {
  const results = await Promise.allSettled(
    scores.map((score) =>
      api.users.getCustomer({ customerId: score.customerId }, { signal }),
    ),
  );
  return scores.map((score, index) => {
    const result = results[index];
    if (result?.status === "fulfilled") {
      return { score, customer: result.value.customer };
    }
    return {
      score,
      customerError: ConnectError.from(result?.reason).rawMessage,
    };
  });
}

/**
 * Finds one customer's latest score by external id or, failing that, by a
 * numeric customer id. Returns no rows when neither matches a scored customer.
 */
async function findCustomer(
  api: Api,
  query: string,
  signal: AbortSignal,
): Promise<Row[]> {
  const lookup = await api.users.lookupCustomers(
    { externalIds: [query] },
    { signal },
  );
  const customerId =
    lookup.customerIds[query] ??
    (/^\d+$/.test(query) ? BigInt(query) : undefined);
  if (customerId === undefined) {
    return [];
  }
  try {
    const { score } = await api.inference.getCustomerScore(
      { customerId },
      { signal },
    );
    return score === undefined ? [] : withCustomers(api, [score], signal);
  } catch (error) {
    if (ConnectError.from(error).code === Code.NotFound) {
      return [];
    }
    throw error;
  }
}

export function AtRiskPage() {
  const api = useApi();
  const [minProbability, setMinProbability] = useState(DEFAULT_MIN_PROBABILITY);
  const [thresholdInput, setThresholdInput] = useState(
    String(DEFAULT_MIN_PROBABILITY),
  );
  const [thresholdError, setThresholdError] = useState<string | null>(null);
  // Page tokens from the first page to the current one, which is last.
  const [tokens, setTokens] = useState<string[]>([""]);
  const [order, setOrder] = useState<SortOrder>("highest");
  const [queryInput, setQueryInput] = useState("");
  const [query, setQuery] = useState("");

  const pageToken = tokens[tokens.length - 1] ?? "";
  const scores = useLoad(
    useCallback(
      async (signal: AbortSignal): Promise<ScorePage> => {
        if (query !== "") {
          return {
            rows: await findCustomer(api, query, signal),
            nextPageToken: "",
            scoringRunId: 0n,
          };
        }
        const page = await api.inference.listScores(
          {
            minChurnProbability: minProbability,
            pageSize: PAGE_SIZE,
            pageToken,
            order: SERVER_ORDER[order],
          },
          { signal },
        );
        return {
          rows: await withCustomers(api, page.scores, signal),
          nextPageToken: page.nextPageToken,
          scoringRunId: page.scoringRunId,
        };
      },
      [api, minProbability, pageToken, query, order],
    ),
  );

  const applyThreshold = (event: FormEvent) => {
    event.preventDefault();
    const value = Number(thresholdInput);
    if (thresholdInput.trim() === "" || !(value >= 0 && value <= 1)) {
      setThresholdError("Enter a probability from 0 to 1.");
      return;
    }
    setThresholdError(null);
    setMinProbability(value);
    setTokens([""]);
  };

  const search = (event: FormEvent) => {
    event.preventDefault();
    setQuery(queryInput.trim());
  };

  const toggleOrder = () => {
    setOrder(order === "highest" ? "lowest" : "highest");
    setTokens([""]);
  };

  return (
    <>
      <h1>At-risk customers</h1>
      <div className="toolbar">
        <form onSubmit={applyThreshold}>
          <label htmlFor="min-probability">Minimum churn probability</label>{" "}
          <input
            id="min-probability"
            inputMode="decimal"
            size={5}
            value={thresholdInput}
            onChange={(event) => setThresholdInput(event.target.value)}
          />{" "}
          <button type="submit">Apply</button>
          {thresholdError !== null && (
            <small className="error"> {thresholdError}</small>
          )}
        </form>
        <form onSubmit={search} role="search">
          <label htmlFor="customer-query">Customer id or external id</label>{" "}
          <input
            id="customer-query"
            value={queryInput}
            onChange={(event) => setQueryInput(event.target.value)}
          />{" "}
          <button type="submit">Find</button>
          {query !== "" && (
            <button
              type="button"
              className="link"
              onClick={() => {
                setQuery("");
                setQueryInput("");
              }}
            >
              Show all
            </button>
          )}
        </form>
      </div>

      <LoadView
        state={scores}
        label="scores"
        isEmpty={(page) => page.rows.length === 0}
        empty={
          query !== ""
            ? `No scored customer matches "${query}".`
            : `No customer in the latest scoring run has a churn probability of ${minProbability} or more.`
        }
      >
        {(page) => (
          <>
            {page.scoringRunId > 0n && (
              <p className="muted">
                Scoring run {page.scoringRunId.toString()}, sorted by churn
                probability across all pages.
              </p>
            )}
            <table>
              <thead>
                <tr>
                  <th>Customer</th>
                  <th>External id</th>
                  <th>Phone</th>
                  <th
                    aria-sort={order === "highest" ? "descending" : "ascending"}
                  >
                    <button
                      type="button"
                      className="link"
                      onClick={toggleOrder}
                    >
                      Churn probability {order === "highest" ? "↓" : "↑"}
                    </button>
                  </th>
                  <th>Expected days to next activity</th>
                  <th>Reasons</th>
                </tr>
              </thead>
              <tbody>
                {page.rows.map((row) => (
                  <ScoreRow key={row.score.customerId.toString()} row={row} />
                ))}
              </tbody>
            </table>
            {query === "" && (
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
            )}
          </>
        )}
      </LoadView>
    </>
  );
}

function ScoreRow({ row }: { row: Row }) {
  const { score, customer, customerError } = row;
  return (
    <tr>
      <td>{score.customerId.toString()}</td>
      <td>{customer?.externalId ?? "—"}</td>
      <td>
        {customer?.phoneNumberMasked ??
          (customerError !== undefined ? (
            <span className="error">{customerError}</span>
          ) : (
            "—"
          ))}
      </td>
      <td>{formatPercent(score.churnProbability)}</td>
      <td>{formatDays(score.expectedDaysToNextActivity)}</td>
      <td>
        <ul className="reasons">
          {score.reasons.map((reason, index) => (
            <li key={`${reason.code}-${index}`}>{reason.text}</li>
          ))}
        </ul>
      </td>
    </tr>
  );
}
