import { useState } from "react";

import { errorText } from "../api/load";
import { useApi, useSession } from "../api/context";
import { CampaignStatus, type Campaign } from "../gen/retain/comms/v1/comms_pb";
import { Role } from "../gen/retain/user/v1/user_pb";

/**
 * True when the signed-in admin created the campaign. The comms service
 * stores the creator's token subject, which is the admin's email, so the
 * two-person rule can be checked here before the server rejects it.
 */
export function isCreator(
  campaign: Campaign,
  email: string | undefined,
): boolean {
  return (
    email !== undefined &&
    campaign.createdBy.trim().toLowerCase() === email.trim().toLowerCase()
  );
}

/**
 * Renders the state changes that the campaign's status allows: Submit,
 * Approve, Launch, Pause and Resume. Analysts see them disabled, and the
 * creator cannot approve their own campaign.
 */
export function CampaignActions({
  campaign,
  onChange,
}: {
  campaign: Campaign;
  onChange: (campaign: Campaign) => void;
}) {
  const { comms } = useApi();
  const session = useSession();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [pauseReason, setPauseReason] = useState("");

  const readOnly = session?.admin.role !== Role.ADMIN;
  const ownCampaign = isCreator(campaign, session?.admin.email);
  const campaignId = campaign.campaignId;

  const run = async (action: () => Promise<{ campaign?: Campaign }>) => {
    setBusy(true);
    setError(null);
    try {
      const response = await action();
      if (response.campaign !== undefined) {
        onChange(response.campaign);
      }
    } catch (caught) {
      setError(errorText(caught));
    } finally {
      setBusy(false);
    }
  };
  const disabled = busy || readOnly;

  return (
    <div className="campaign-actions">
      {readOnly && (
        <p className="muted">
          Analysts can view campaigns but not change them.
        </p>
      )}
      {campaign.status === CampaignStatus.DRAFT && (
        <button
          type="button"
          disabled={disabled}
          onClick={() => void run(() => comms.submitCampaign({ campaignId }))}
        >
          Submit for approval
        </button>
      )}
      {campaign.status === CampaignStatus.AWAITING_APPROVAL && (
        <>
          <button
            type="button"
            disabled={disabled || ownCampaign}
            aria-describedby={ownCampaign ? "approve-hint" : undefined}
            onClick={() =>
              void run(() => comms.approveCampaign({ campaignId }))
            }
          >
            Approve
          </button>
          {ownCampaign && (
            <small id="approve-hint" className="muted">
              You created this campaign, so another admin must approve it.
            </small>
          )}
        </>
      )}
      {campaign.status === CampaignStatus.APPROVED && (
        <button
          type="button"
          disabled={disabled}
          onClick={() => void run(() => comms.launchCampaign({ campaignId }))}
        >
          Launch
        </button>
      )}
      {campaign.status === CampaignStatus.RUNNING && (
        <>
          <input
            aria-label="Pause reason"
            placeholder="Reason (optional)"
            value={pauseReason}
            maxLength={200}
            onChange={(event) => setPauseReason(event.target.value)}
          />
          <button
            type="button"
            disabled={disabled}
            onClick={() =>
              void run(() =>
                comms.pauseCampaign({ campaignId, reason: pauseReason.trim() }),
              )
            }
          >
            Pause
          </button>
        </>
      )}
      {campaign.status === CampaignStatus.PAUSED && (
        <button
          type="button"
          disabled={disabled}
          onClick={() => void run(() => comms.resumeCampaign({ campaignId }))}
        >
          Resume
        </button>
      )}
      {error !== null && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </div>
  );
}
