import { describe, expect, it } from "vitest";

import { formatDays } from "./numbers";

describe("formatDays", () => {
  it("rounds to whole days within a year", () => {
    expect(formatDays(1.4)).toBe("1 day");
    expect(formatDays(23.6)).toBe("24 days");
    expect(formatDays(365)).toBe("365 days");
  });

  it("says over a year for longer waits", () => {
    expect(formatDays(365.5)).toBe("over a year");
    expect(formatDays(3414.8)).toBe("over a year");
  });

  it("handles waits under a day and values that are no wait", () => {
    expect(formatDays(0.2)).toBe("under a day");
    expect(formatDays(Number.NaN)).toBe("—");
    expect(formatDays(-3)).toBe("—");
  });
});
