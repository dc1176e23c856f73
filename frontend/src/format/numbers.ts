const counts = new Intl.NumberFormat("en-US");

/** Formats a count, int64 or not, with thousands separators. */
export function formatCount(count: bigint | number): string {
  return counts.format(count);
}

/** Formats a share from 0 to 1 as a percentage with one decimal: "12.5%". */
export function formatPercent(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

/** Formats a difference of two shares in percentage points: "+3.2 pp". */
export function formatPoints(difference: number): string {
  const points = (difference * 100).toFixed(1);
  return `${difference > 0 ? "+" : ""}${points} pp`;
}

/**
 * Formats an expected wait in days for a reader: whole days up to a year,
 * and "over a year" beyond, where a long-tailed estimate is too uncertain
 * to print.
 */
export function formatDays(days: number): string {
  if (!Number.isFinite(days) || days < 0) {
    return "—";
  }
  if (days < 1) {
    return "under a day";
  }
  if (days > 365) {
    return "over a year";
  }
  const whole = Math.round(days);
  return `${whole} day${whole === 1 ? "" : "s"}`;
}
