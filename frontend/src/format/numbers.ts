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
