import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";

import { MoneySchema } from "../gen/retain/type/v1/money_pb";
import { formatMicros, formatMoney, parseKesToMicros } from "./money";

describe("formatMicros", () => {
  it.each([
    [1_234_560_000n, "KES 1,234.56"],
    [0n, "KES 0.00"],
    [800_000n, "KES 0.80"],
    [5_000n, "KES 0.01"],
    [4_999n, "KES 0.00"],
    [-1_234_565_000n, "KES -1,234.57"],
    [-4_000n, "KES 0.00"],
    [9_007_199_254_740_993_000_000n, "KES 9,007,199,254,740,993.00"],
  ])("formats %s micros as %s", (micros, expected) => {
    expect(formatMicros(micros)).toBe(expected);
  });

  it("keeps four decimals for unit prices", () => {
    expect(formatMicros(812_300n, "KES", 4)).toBe("KES 0.8123");
  });
});

describe("formatMoney", () => {
  it("uses the currency code of the message", () => {
    const money = create(MoneySchema, {
      currencyCode: "USD",
      amountMicros: 2_500_000n,
    });
    expect(formatMoney(money)).toBe("USD 2.50");
  });

  it("shows a dash for an unset field", () => {
    expect(formatMoney(undefined)).toBe("—");
  });
});

describe("parseKesToMicros", () => {
  it.each([
    ["1234.56", 1_234_560_000n],
    ["0.8", 800_000n],
    ["5000", 5_000_000_000n],
    ["0.000001", 1n],
    [" 12 ", 12_000_000n],
  ])("parses %j exactly", (text, expected) => {
    expect(parseKesToMicros(text)).toBe(expected);
  });

  it.each(["", "abc", "-5", "1,000", "1.2345678", "1e3", "."])(
    "rejects %j",
    (text) => {
      expect(parseKesToMicros(text)).toBeNull();
    },
  );
});
