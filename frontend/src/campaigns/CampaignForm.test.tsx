import { Code, ConnectError } from "@connectrpc/connect";
import { fireEvent, render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";

import type { CampaignSpec } from "../gen/retain/comms/v1/comms_pb";
import { CampaignForm } from "./CampaignForm";

function fill(label: string, value: string) {
  fireEvent.change(screen.getByLabelText(label), { target: { value } });
}

describe("CampaignForm", () => {
  it("submits the converted spec", async () => {
    const onSubmit = vi.fn<(spec: CampaignSpec) => Promise<void>>(() =>
      Promise.resolve(),
    );
    render(<CampaignForm onSubmit={onSubmit} />);

    fill("Name", "Win back riders");
    fill("Budget (KES)", "2500.5");
    fill("Send window start", "09:15");
    await userEvent.click(
      screen.getByRole("button", { name: "Create campaign" }),
    );

    expect(onSubmit).toHaveBeenCalledTimes(1);
    const spec = onSubmit.mock.calls[0]?.[0];
    expect(spec?.name).toBe("Win back riders");
    expect(spec?.budget).toMatchObject({
      currencyCode: "KES",
      amountMicros: 2_500_500_000n,
    });
    expect(spec?.sendWindow).toMatchObject({
      startMinute: 555,
      endMinute: 1140,
    });
  });

  it("shows field errors and does not submit invalid input", async () => {
    const onSubmit = vi.fn(() => Promise.resolve());
    render(<CampaignForm onSubmit={onSubmit} />);

    fill("Churn probability threshold", "2");
    await userEvent.click(
      screen.getByRole("button", { name: "Create campaign" }),
    );

    expect(onSubmit).not.toHaveBeenCalled();
    expect(
      screen.getByText("Enter a name of 1 to 120 characters."),
    ).toBeInTheDocument();
    expect(
      screen.getByText(/Enter a probability from 0 to 1/),
    ).toBeInTheDocument();
    expect(
      screen.getByText(/Enter a budget in KES greater than 0/),
    ).toBeInTheDocument();
    expect(screen.getByLabelText("Name")).toHaveAttribute(
      "aria-invalid",
      "true",
    );
  });

  it("shows the server's message when creation fails", async () => {
    const message = "spec.channel: only CHANNEL_SMS campaigns are supported";
    const onSubmit = vi.fn(() =>
      Promise.reject(new ConnectError(message, Code.InvalidArgument)),
    );
    render(<CampaignForm onSubmit={onSubmit} />);

    fill("Name", "Voice test");
    fill("Budget (KES)", "100");
    await userEvent.click(
      screen.getByRole("button", { name: "Create campaign" }),
    );

    expect(await screen.findByRole("alert")).toHaveTextContent(message);
  });
});
