/** Parses the :campaignId route parameter, or returns null when it is not a positive id. */
export function parseCampaignId(param: string | undefined): bigint | null {
  if (param === undefined || !/^\d+$/.test(param)) {
    return null;
  }
  const id = BigInt(param);
  return id > 0n ? id : null;
}
