import type { Money } from "../gen/retain/type/v1/money_pb";

/** Micros per main currency unit: KES 0.8000 is 800000 micros. */
export const MICROS_PER_UNIT = 1_000_000n;

const grouping = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/**
 * Formats an amount in micros as "KES 1,234.56", rounding half away from
 * zero. The arithmetic stays in bigint, so large amounts keep every digit.
 */
export function formatMicros(
  micros: bigint,
  currencyCode = "KES",
  fractionDigits = 2,
): string {
  const negative = micros < 0n;
  const magnitude = negative ? -micros : micros;
  const step = 10n ** BigInt(6 - fractionDigits);
  const units = (magnitude + step / 2n) / step;
  const scale = 10n ** BigInt(fractionDigits);
  const whole = grouping.format(units / scale);
  const fraction = (units % scale).toString().padStart(fractionDigits, "0");
  const number = fractionDigits > 0 ? `${whole}.${fraction}` : whole;
  const sign = negative && units > 0n ? "-" : "";
  return `${currencyCode} ${sign}${number}`;
}

/** Formats Money, or an em dash when the field is unset. */
export function formatMoney(
  money: Money | undefined,
  fractionDigits = 2,
): string {
  if (money === undefined) {
    return "—";
  }
  return formatMicros(
    money.amountMicros,
    money.currencyCode || "KES",
    fractionDigits,
  );
}

/**
 * Parses a decimal amount of KES such as "1234.56" into micros, exactly.
 * Returns null for anything but digits with up to six decimals.
 */
export function parseKesToMicros(text: string): bigint | null {
  const match = /^(\d+)(?:\.(\d{1,6}))?$/.exec(text.trim());
  if (match === null) {
    return null;
  }
  const [, whole = "0", fraction = ""] = match;
  return BigInt(whole) * MICROS_PER_UNIT + BigInt(fraction.padEnd(6, "0"));
}
