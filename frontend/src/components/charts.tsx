import {
  Bar,
  BarChart,
  CartesianGrid,
  Legend,
  Line,
  LineChart,
  Tooltip,
  XAxis,
  YAxis,
} from "recharts";

import type { DailyEventCount } from "../gen/retain/events/v1/events_pb";
import type {
  RiskBucket,
  RunRisk,
} from "../gen/retain/inference/v1/inference_pb";
import { formatDay } from "../format/time";

/** Chart size: a fixed width for tests, or the container's width by default. */
export interface ChartSize {
  width?: number;
  height?: number;
}

const HEIGHT = 240;

function sizeProps({ width, height = HEIGHT }: ChartSize) {
  return width === undefined
    ? { responsive: true, style: { width: "100%", height } }
    : { width, height };
}

export interface HistogramBar {
  range: string;
  customers: number;
}

/** Turns GetRiskDistribution buckets into chart rows labelled "0.40–0.50". */
export function histogramBars(buckets: readonly RiskBucket[]): HistogramBar[] {
  return buckets.map((bucket) => ({
    range: `${bucket.lower.toFixed(2)}–${bucket.upper.toFixed(2)}`,
    customers: Number(bucket.customerCount),
  }));
}

/**
 * Draws the churn probability histogram, with the same numbers in a table
 * for screen readers and copying.
 */
export function RiskHistogram({
  buckets,
  ...size
}: { buckets: readonly RiskBucket[] } & ChartSize) {
  const bars = histogramBars(buckets);
  return (
    <figure className="chart">
      <BarChart data={bars} {...sizeProps(size)}>
        <CartesianGrid strokeDasharray="3 3" vertical={false} />
        <XAxis dataKey="range" fontSize={11} />
        <YAxis allowDecimals={false} fontSize={11} />
        <Tooltip />
        <Bar
          dataKey="customers"
          name="Customers"
          fill="#c2410c"
          isAnimationActive={false}
        />
      </BarChart>
      <table className="sr-only" aria-label="Risk distribution">
        <thead>
          <tr>
            <th>Churn probability</th>
            <th>Customers</th>
          </tr>
        </thead>
        <tbody>
          {bars.map((bar) => (
            <tr key={bar.range}>
              <td>{bar.range}</td>
              <td>{bar.customers}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}

/** Draws the at-risk count of recent scoring runs, oldest first. */
export function RiskOverTime({
  runs,
  ...size
}: { runs: readonly RunRisk[] } & ChartSize) {
  const points = runs.map((run) => ({
    day: formatDay(run.asOfTime),
    atRisk: Number(run.atRiskCount),
    scored: Number(run.scoredCount),
  }));
  return (
    <figure className="chart">
      <LineChart data={points} {...sizeProps(size)}>
        <CartesianGrid strokeDasharray="3 3" vertical={false} />
        <XAxis dataKey="day" fontSize={11} />
        <YAxis allowDecimals={false} fontSize={11} />
        <Tooltip />
        <Legend />
        <Line
          dataKey="atRisk"
          name="At risk"
          stroke="#c2410c"
          isAnimationActive={false}
        />
        <Line
          dataKey="scored"
          name="Scored"
          stroke="#64748b"
          isAnimationActive={false}
        />
      </LineChart>
    </figure>
  );
}

/** Draws events and active customers per Nairobi day. */
export function EventsPerDay({
  days,
  ...size
}: { days: readonly DailyEventCount[] } & ChartSize) {
  const points = days.map((day) => ({
    day: day.day,
    events: Number(day.eventCount),
    customers: Number(day.activeCustomerCount),
  }));
  return (
    <figure className="chart">
      <LineChart data={points} {...sizeProps(size)}>
        <CartesianGrid strokeDasharray="3 3" vertical={false} />
        <XAxis dataKey="day" fontSize={11} minTickGap={24} />
        <YAxis allowDecimals={false} fontSize={11} />
        <Tooltip />
        <Legend />
        <Line
          dataKey="events"
          name="Events"
          stroke="#0f766e"
          dot={false}
          isAnimationActive={false}
        />
        <Line
          dataKey="customers"
          name="Active customers"
          stroke="#64748b"
          dot={false}
          isAnimationActive={false}
        />
      </LineChart>
    </figure>
  );
}
