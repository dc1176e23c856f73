import { useCallback } from "react";

import { useApi } from "../api/context";
import { useLoad } from "../api/load";
import {
  EventsPerDay,
  RiskHistogram,
  RiskOverTime,
} from "../components/charts";
import { LoadView } from "../components/states";
import { formatCount, formatPercent } from "../format/numbers";
import { formatTime } from "../format/time";

/** The churn probability at or above which the overview counts a customer at risk. */
const AT_RISK_THRESHOLD = 0.5;
const HISTOGRAM_BUCKETS = 10;

export function OverviewPage() {
  const { users, inference, events } = useApi();

  const customers = useLoad(
    useCallback(
      (signal: AbortSignal) => users.getCustomerStats({}, { signal }),
      [users],
    ),
  );
  const risk = useLoad(
    useCallback(
      (signal: AbortSignal) =>
        inference.getRiskDistribution(
          {
            bucketCount: HISTOGRAM_BUCKETS,
            atRiskThreshold: AT_RISK_THRESHOLD,
          },
          { signal },
        ),
      [inference],
    ),
  );
  const activity = useLoad(
    useCallback(
      (signal: AbortSignal) => events.getEventStats({}, { signal }),
      [events],
    ),
  );

  return (
    <>
      <h1>Overview</h1>
      <section className="cards">
        <LoadView state={customers} label="customer counts">
          {(stats) => (
            <>
              <Stat
                label="Customers"
                value={formatCount(stats.customerCount)}
              />
              <Stat
                label="Consented to marketing SMS"
                value={formatCount(stats.marketingSmsConsentCount)}
              />
              <Stat
                label="Opted-out numbers"
                value={formatCount(stats.optedOutCount)}
              />
            </>
          )}
        </LoadView>
        <LoadView
          state={risk}
          label="the latest scoring run"
          isEmpty={(distribution) => distribution.runs.length === 0}
          empty="No scoring run has finished yet."
        >
          {(distribution) => {
            const latest = distribution.runs[distribution.runs.length - 1];
            if (latest === undefined) {
              return null;
            }
            const share =
              latest.scoredCount > 0n
                ? Number(latest.atRiskCount) / Number(latest.scoredCount)
                : 0;
            return (
              <Stat
                label={`At risk (≥ ${AT_RISK_THRESHOLD}) on ${formatTime(latest.asOfTime)}`}
                value={`${formatCount(latest.atRiskCount)} (${formatPercent(share)})`}
              />
            );
          }}
        </LoadView>
      </section>

      <section>
        <h2>Risk distribution</h2>
        <LoadView
          state={risk}
          label="risk distribution"
          isEmpty={(distribution) => distribution.buckets.length === 0}
          empty="No scores yet: run a scoring job first."
        >
          {(distribution) => <RiskHistogram buckets={distribution.buckets} />}
        </LoadView>
      </section>

      <section>
        <h2>Risk over time</h2>
        <LoadView
          state={risk}
          label="recent scoring runs"
          isEmpty={(distribution) => distribution.runs.length === 0}
          empty="No scoring runs yet."
        >
          {(distribution) => <RiskOverTime runs={distribution.runs} />}
        </LoadView>
      </section>

      <section>
        <h2>Events per day</h2>
        <LoadView
          state={activity}
          label="event statistics"
          isEmpty={(stats) => stats.days.length === 0}
          empty="No events in the last 90 days."
        >
          {(stats) => (
            <>
              <p className="muted">
                {formatCount(stats.eventCount)} events from{" "}
                {formatCount(stats.customerCount)} customers in total.
              </p>
              <EventsPerDay days={stats.days} />
            </>
          )}
        </LoadView>
      </section>
    </>
  );
}

function Stat({ label, value }: { label: string; value: string }) {
  return (
    <div className="card">
      <div className="muted">{label}</div>
      <div className="stat">{value}</div>
    </div>
  );
}
