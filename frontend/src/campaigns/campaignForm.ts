import { create } from "@bufbuild/protobuf";

import {
  CampaignSpecSchema,
  type CampaignSpec,
} from "../gen/retain/comms/v1/comms_pb";
import { Channel, Purpose } from "../gen/retain/type/v1/channel_pb";
import { parseKesToMicros } from "../format/money";
import { parseClock } from "../format/time";

/** The campaign form's inputs, as the user typed them. */
export interface CampaignFormValues {
  name: string;
  /** Churn probability threshold, 0 to 1. */
  minChurnProbability: string;
  /** Share of eligible customers held out as the control group, 0 to 0.5. */
  holdoutShare: string;
  budgetKes: string;
  /** Send window start and end, "HH:MM" in Nairobi time. */
  sendWindowStart: string;
  sendWindowEnd: string;
  capMaxMessages: string;
  capPeriodDays: string;
  channel: Channel;
  purpose: Purpose;
  offer: string;
  maxSegments: string;
  brandName: string;
}

export type CampaignFormErrors = Partial<
  Record<keyof CampaignFormValues, string>
>;

export type CampaignFormResult =
  { ok: true; spec: CampaignSpec } | { ok: false; errors: CampaignFormErrors };

// Limits the comms service enforces on CampaignSpec.
export const MAX_NAME = 120;
export const MAX_OFFER = 160;
export const MAX_BRAND_NAME = 40;
export const MAX_HOLDOUT_SHARE = 0.5;
export const MAX_SEGMENTS = 3;
export const MAX_PERIOD_DAYS = 365;
const INT32_MAX = 2_147_483_647;

export const DEFAULT_CAMPAIGN_FORM: CampaignFormValues = {
  name: "",
  minChurnProbability: "0.6",
  holdoutShare: "0.2",
  budgetKes: "",
  sendWindowStart: "07:00",
  sendWindowEnd: "19:00",
  capMaxMessages: "1",
  capPeriodDays: "7",
  channel: Channel.SMS,
  purpose: Purpose.MARKETING,
  offer: "",
  maxSegments: "1",
  brandName: "",
};

/** Parses a decimal such as "0.25" within [low, high], or returns null. */
function decimalIn(text: string, low: number, high: number): number | null {
  if (!/^\d+(\.\d+)?$/.test(text.trim())) {
    return null;
  }
  const value = Number(text);
  return value >= low && value <= high ? value : null;
}

/** Parses a whole number within [low, high], or returns null. */
function wholeIn(text: string, low: number, high: number): number | null {
  if (!/^\d+$/.test(text.trim())) {
    return null;
  }
  const value = Number(text);
  return value >= low && value <= high ? value : null;
}

/**
 * Checks the form and converts it to a CampaignSpec, or returns a message per
 * invalid field. The checks mirror the comms service's, so most mistakes are
 * caught before a round trip. The server still has the last word.
 */
export function parseCampaignForm(
  values: CampaignFormValues,
): CampaignFormResult {
  const errors: CampaignFormErrors = {};

  const name = values.name.trim();
  if (name.length === 0 || name.length > MAX_NAME) {
    errors.name = `Enter a name of 1 to ${MAX_NAME} characters.`;
  }

  const threshold = decimalIn(values.minChurnProbability, 0, 1);
  if (threshold === null) {
    errors.minChurnProbability =
      "Enter a probability from 0 to 1, such as 0.6.";
  }

  const holdout = decimalIn(values.holdoutShare, 0, MAX_HOLDOUT_SHARE);
  if (holdout === null) {
    errors.holdoutShare = `Enter a share from 0 to ${MAX_HOLDOUT_SHARE}, such as 0.2.`;
  }

  const parsedBudget = parseKesToMicros(values.budgetKes);
  const budgetMicros =
    parsedBudget !== null && parsedBudget > 0n ? parsedBudget : null;
  if (budgetMicros === null) {
    errors.budgetKes =
      "Enter a budget in KES greater than 0, such as 5000 or 2500.50.";
  }

  const startMinute = parseClock(values.sendWindowStart);
  if (startMinute === null) {
    errors.sendWindowStart = "Enter a time as HH:MM, from 00:00 to 23:59.";
  }
  // The window's end is exclusive, so "24:00" or "00:00" ends at midnight.
  const parsedEnd = parseClock(values.sendWindowEnd, true);
  const endMinute = parsedEnd === 0 ? 1440 : parsedEnd;
  if (endMinute === null) {
    errors.sendWindowEnd = "Enter a time as HH:MM, from 00:00 to 24:00.";
  } else if (startMinute !== null && startMinute === endMinute % 1440) {
    errors.sendWindowEnd =
      "The window must end at a different time than it starts.";
  }

  const maxMessages = wholeIn(values.capMaxMessages, 0, INT32_MAX);
  if (maxMessages === null) {
    errors.capMaxMessages = "Enter a whole number of messages; 0 means no cap.";
  }
  // The period only matters when there is a cap.
  const periodDays =
    maxMessages === 0 ? 0 : wholeIn(values.capPeriodDays, 1, MAX_PERIOD_DAYS);
  if (periodDays === null) {
    errors.capPeriodDays = `Enter a whole number of days from 1 to ${MAX_PERIOD_DAYS}.`;
  }

  if (values.channel === Channel.UNSPECIFIED) {
    errors.channel = "Choose a channel.";
  }
  if (values.purpose === Purpose.UNSPECIFIED) {
    errors.purpose = "Choose a purpose.";
  }
  const offer = values.offer.trim();
  if (offer.length > MAX_OFFER) {
    errors.offer = `Keep the offer to ${MAX_OFFER} characters or fewer.`;
  }
  const maxSegments = wholeIn(values.maxSegments, 1, MAX_SEGMENTS);
  if (maxSegments === null) {
    errors.maxSegments = `Enter 1 to ${MAX_SEGMENTS} SMS parts.`;
  }
  const brandName = values.brandName.trim();
  if (brandName.length > MAX_BRAND_NAME) {
    errors.brandName = `Keep the brand name to ${MAX_BRAND_NAME} characters or fewer.`;
  }

  if (
    Object.keys(errors).length > 0 ||
    threshold === null ||
    holdout === null ||
    budgetMicros === null ||
    startMinute === null ||
    endMinute === null ||
    maxMessages === null ||
    periodDays === null ||
    maxSegments === null
  ) {
    return { ok: false, errors };
  }
  return {
    ok: true,
    spec: create(CampaignSpecSchema, {
      name,
      minChurnProbability: threshold,
      holdoutShare: holdout,
      budget: { currencyCode: "KES", amountMicros: budgetMicros },
      sendWindow: { startMinute, endMinute },
      frequencyCap: { maxMessages, periodDays },
      channel: values.channel,
      purpose: values.purpose,
      offer,
      maxSegments,
      brandName,
    }),
  };
}
