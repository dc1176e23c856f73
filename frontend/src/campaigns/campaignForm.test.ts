import { describe, expect, it } from "vitest";

import { Channel, Purpose } from "../gen/retain/type/v1/channel_pb";
import {
  DEFAULT_CAMPAIGN_FORM,
  parseCampaignForm,
  type CampaignFormValues,
} from "./campaignForm";

const valid: CampaignFormValues = {
  ...DEFAULT_CAMPAIGN_FORM,
  name: "  Lapsed riders, March  ",
  minChurnProbability: "0.65",
  holdoutShare: "0.25",
  budgetKes: "1234.56",
  sendWindowStart: "08:30",
  sendWindowEnd: "20:00",
  capMaxMessages: "2",
  capPeriodDays: "14",
  channel: Channel.SMS,
  purpose: Purpose.MARKETING,
  offer: "20% off your next ride",
  maxSegments: "2",
  brandName: "SafiriRide",
};

/** Returns the spec for `valid` with `changes`, failing the test on errors. */
function specOf(changes: Partial<CampaignFormValues>) {
  const result = parseCampaignForm({ ...valid, ...changes });
  if (!result.ok) {
    throw new Error(`unexpected errors: ${JSON.stringify(result.errors)}`);
  }
  return result.spec;
}

function errorsOf(changes: Partial<CampaignFormValues>) {
  const result = parseCampaignForm({ ...valid, ...changes });
  return result.ok ? {} : result.errors;
}

describe("parseCampaignForm", () => {
  it("converts valid inputs to a CampaignSpec", () => {
    const spec = specOf({});

    expect(spec.name).toBe("Lapsed riders, March");
    expect(spec.minChurnProbability).toBe(0.65);
    expect(spec.holdoutShare).toBe(0.25);
    expect(spec.budget?.currencyCode).toBe("KES");
    expect(spec.budget?.amountMicros).toBe(1_234_560_000n);
    expect(spec.sendWindow?.startMinute).toBe(510);
    expect(spec.sendWindow?.endMinute).toBe(1200);
    expect(spec.frequencyCap?.maxMessages).toBe(2);
    expect(spec.frequencyCap?.periodDays).toBe(14);
    expect(spec.channel).toBe(Channel.SMS);
    expect(spec.purpose).toBe(Purpose.MARKETING);
    expect(spec.offer).toBe("20% off your next ride");
    expect(spec.maxSegments).toBe(2);
    expect(spec.brandName).toBe("SafiriRide");
  });

  it("maps a 00:00 end to midnight", () => {
    const spec = specOf({ sendWindowStart: "18:00", sendWindowEnd: "00:00" });
    expect(spec.sendWindow?.startMinute).toBe(1080);
    expect(spec.sendWindow?.endMinute).toBe(1440);
  });

  it("accepts a window past midnight", () => {
    const spec = specOf({ sendWindowStart: "22:00", sendWindowEnd: "02:00" });
    expect(spec.sendWindow?.startMinute).toBe(1320);
    expect(spec.sendWindow?.endMinute).toBe(120);
  });

  it("ignores the period without a cap", () => {
    const spec = specOf({ capMaxMessages: "0", capPeriodDays: "" });
    expect(spec.frequencyCap?.maxMessages).toBe(0);
    expect(spec.frequencyCap?.periodDays).toBe(0);
  });

  it.each<[string, Partial<CampaignFormValues>, keyof CampaignFormValues]>([
    ["blank name", { name: "   " }, "name"],
    ["long name", { name: "x".repeat(121) }, "name"],
    [
      "threshold above 1",
      { minChurnProbability: "1.5" },
      "minChurnProbability",
    ],
    [
      "threshold not a number",
      { minChurnProbability: "high" },
      "minChurnProbability",
    ],
    ["holdout above half", { holdoutShare: "0.6" }, "holdoutShare"],
    ["zero budget", { budgetKes: "0" }, "budgetKes"],
    ["budget with commas", { budgetKes: "1,000" }, "budgetKes"],
    ["budget with seven decimals", { budgetKes: "1.0000001" }, "budgetKes"],
    ["start hour 24", { sendWindowStart: "24:00" }, "sendWindowStart"],
    ["start minute 60", { sendWindowStart: "07:60" }, "sendWindowStart"],
    ["end not a time", { sendWindowEnd: "7pm" }, "sendWindowEnd"],
    [
      "empty window",
      { sendWindowStart: "09:00", sendWindowEnd: "09:00" },
      "sendWindowEnd",
    ],
    ["negative cap", { capMaxMessages: "-1" }, "capMaxMessages"],
    [
      "cap without period",
      { capMaxMessages: "1", capPeriodDays: "0" },
      "capPeriodDays",
    ],
    ["four SMS parts", { maxSegments: "4" }, "maxSegments"],
    ["no channel", { channel: Channel.UNSPECIFIED }, "channel"],
    ["no purpose", { purpose: Purpose.UNSPECIFIED }, "purpose"],
    ["long offer", { offer: "x".repeat(161) }, "offer"],
    ["long brand", { brandName: "x".repeat(41) }, "brandName"],
  ])("rejects %s", (_case, changes, field) => {
    const errors = errorsOf(changes);
    expect(Object.keys(errors)).toEqual([field]);
  });
});
