import { useNavigate } from "react-router";

import { useApi } from "../api/context";
import { CampaignForm } from "../campaigns/CampaignForm";
import type { CampaignSpec } from "../gen/retain/comms/v1/comms_pb";

export function NewCampaignPage() {
  const { comms } = useApi();
  const navigate = useNavigate();

  const create = async (spec: CampaignSpec) => {
    const { campaign } = await comms.createCampaign({ spec });
    void navigate(
      campaign ? `/campaigns/${campaign.campaignId.toString()}` : "/campaigns",
    );
  };

  return (
    <>
      <h1>New campaign</h1>
      <p className="muted">
        A new campaign starts as a draft. Submit it for approval, and a second
        admin approves it before it can launch.
      </p>
      <CampaignForm onSubmit={create} />
    </>
  );
}
