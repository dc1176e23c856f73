import { create } from "@bufbuild/protobuf";
import { screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";

import {
  CampaignSchema,
  CampaignStatus,
  CommsService,
} from "../gen/retain/comms/v1/comms_pb";
import { Role } from "../gen/retain/user/v1/user_pb";
import { renderWithApi, signInAs, testApi } from "../test/api";
import { CampaignActions } from "./CampaignActions";

const awaiting = create(CampaignSchema, {
  campaignId: 7n,
  status: CampaignStatus.AWAITING_APPROVAL,
  createdBy: "amina@example.co.ke",
});

function setup(email: string, role: Role = Role.ADMIN) {
  const approvals: bigint[] = [];
  const api = testApi((router) =>
    router.service(CommsService, {
      approveCampaign(request) {
        approvals.push(request.campaignId);
        return {
          campaign: {
            ...awaiting,
            status: CampaignStatus.APPROVED,
            approvedBy: email,
          },
        };
      },
    }),
  );
  signInAs(api, email, role);
  const onChange = vi.fn();
  renderWithApi(
    <CampaignActions campaign={awaiting} onChange={onChange} />,
    api,
  );
  return { approvals, onChange };
}

describe("CampaignActions approve button", () => {
  it("is disabled for the campaign's creator", () => {
    setup("Amina@example.co.ke");

    expect(screen.getByRole("button", { name: "Approve" })).toBeDisabled();
    expect(
      screen.getByText(/another admin must approve it/),
    ).toBeInTheDocument();
  });

  it("approves through the service for a second admin", async () => {
    const { approvals, onChange } = setup("baraka@example.co.ke");

    const approve = screen.getByRole("button", { name: "Approve" });
    expect(approve).toBeEnabled();
    await userEvent.click(approve);

    expect(approvals).toEqual([7n]);
    expect(onChange).toHaveBeenCalledTimes(1);
    expect(onChange.mock.calls[0]?.[0]).toMatchObject({
      status: CampaignStatus.APPROVED,
      approvedBy: "baraka@example.co.ke",
    });
  });

  it("is disabled for an analyst", () => {
    setup("wanjiru@example.co.ke", Role.ANALYST);

    expect(screen.getByRole("button", { name: "Approve" })).toBeDisabled();
  });
});
