import type { DescEnum } from "@bufbuild/protobuf";

// Words of enum names that read as acronyms.
const ACRONYMS: Record<string, string> = {
  sms: "SMS",
  ussd: "USSD",
  gsm: "GSM",
  ucs: "UCS",
};

/**
 * Returns an enum value's name without the enum's prefix, in sentence case:
 * CAMPAIGN_STATUS_AWAITING_APPROVAL becomes "Awaiting approval".
 */
export function enumLabel(schema: DescEnum, value: number): string {
  const described = schema.values.find((v) => v.number === value);
  if (described === undefined) {
    return `Unknown (${value})`;
  }
  const words = described.localName
    .toLowerCase()
    .split("_")
    .map((word) => ACRONYMS[word] ?? word)
    .join(" ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** Returns the values of an enum that a user may choose: all but UNSPECIFIED. */
export function enumChoices(
  schema: DescEnum,
): { value: number; label: string }[] {
  return schema.values
    .filter((v) => v.number !== 0)
    .map((v) => ({ value: v.number, label: enumLabel(schema, v.number) }));
}
