import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

const NAIROBI = "Africa/Nairobi";

const dateTime = new Intl.DateTimeFormat("en-GB", {
  timeZone: NAIROBI,
  dateStyle: "medium",
  timeStyle: "short",
});

const dateOnly = new Intl.DateTimeFormat("en-GB", {
  timeZone: NAIROBI,
  day: "numeric",
  month: "short",
});

/** Formats a Timestamp in Nairobi time, or an em dash when unset. */
export function formatTime(time: Timestamp | undefined): string {
  return time === undefined ? "—" : dateTime.format(timestampDate(time));
}

/** Formats a Timestamp as a short Nairobi date such as "3 Feb". */
export function formatDay(time: Timestamp | undefined): string {
  return time === undefined ? "—" : dateOnly.format(timestampDate(time));
}

/** Formats minutes after midnight as "HH:MM", so 1440 is "24:00". */
export function formatClock(minutes: number): string {
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return `${String(hours).padStart(2, "0")}:${String(rest).padStart(2, "0")}`;
}

/**
 * Parses "HH:MM" (00:00 to 23:59, or 24:00 when allowed) into minutes after
 * midnight. Returns null when the text is not such a time.
 */
export function parseClock(
  text: string,
  allowMidnightEnd = false,
): number | null {
  const match = /^(\d{1,2}):(\d{2})$/.exec(text.trim());
  if (match === null) {
    return null;
  }
  const minutes = Number(match[1]) * 60 + Number(match[2]);
  if (Number(match[2]) > 59) {
    return null;
  }
  const limit = allowMidnightEnd ? 1440 : 1439;
  return minutes <= limit ? minutes : null;
}
