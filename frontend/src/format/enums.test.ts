import { describe, expect, it } from "vitest";

import {
  CampaignStatusSchema,
  Encoding,
  EncodingSchema,
} from "../gen/retain/comms/v1/comms_pb";
import { Channel, ChannelSchema } from "../gen/retain/type/v1/channel_pb";
import { enumLabel } from "./enums";

describe("enumLabel", () => {
  it("writes names in sentence case without the prefix", () => {
    expect(enumLabel(CampaignStatusSchema, 2)).toBe("Awaiting approval");
  });

  it("keeps acronyms in capitals", () => {
    expect(enumLabel(ChannelSchema, Channel.SMS)).toBe("SMS");
    expect(enumLabel(ChannelSchema, Channel.USSD)).toBe("USSD");
    expect(enumLabel(ChannelSchema, Channel.VOICE)).toBe("Voice");
    expect(enumLabel(EncodingSchema, Encoding.GSM_7)).toBe("GSM 7");
    expect(enumLabel(EncodingSchema, Encoding.UCS_2)).toBe("UCS 2");
  });

  it("names a value the schema lacks", () => {
    expect(enumLabel(ChannelSchema, 99)).toBe("Unknown (99)");
  });
});
