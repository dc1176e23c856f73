import { useState } from "react";

import { useApi, useSession } from "../api/context";
import { errorText } from "../api/load";
import { Role } from "../gen/retain/user/v1/user_pb";

type Step =
  | { kind: "idle" }
  | { kind: "confirming" }
  | { kind: "busy" }
  | { kind: "done"; message: string }
  | { kind: "failed"; message: string };

/**
 * Renders the global stop, which pauses every running campaign and blocks
 * launches until the stop is lifted. It requests confirmation and takes an
 * optional reason first.
 */
export function StopAllCampaigns({ onStopped }: { onStopped?: () => void }) {
  const { comms } = useApi();
  const session = useSession();
  const [step, setStep] = useState<Step>({ kind: "idle" });
  const [reason, setReason] = useState("");
  const readOnly = session?.admin.role !== Role.ADMIN;

  const stop = async () => {
    setStep({ kind: "busy" });
    try {
      const response = await comms.stopAllCampaigns({ reason: reason.trim() });
      const count = response.pausedCampaignIds.length;
      setStep({
        kind: "done",
        message: `Paused ${count} running campaign${count === 1 ? "" : "s"}. Launches are blocked until the stop is lifted.`,
      });
      onStopped?.();
    } catch (error) {
      setStep({ kind: "failed", message: errorText(error) });
    }
  };

  const lift = async () => {
    setStep({ kind: "busy" });
    try {
      await comms.resumeAllCampaigns({});
      setStep({
        kind: "done",
        message:
          "Launches are allowed again. Paused campaigns stay paused until resumed.",
      });
    } catch (error) {
      setStep({ kind: "failed", message: errorText(error) });
    }
  };

  return (
    <div className="card danger-zone">
      {step.kind === "confirming" ? (
        <div>
          <p>
            Stop every running campaign now? Messages not yet sent wait, and no
            campaign can launch until the stop is lifted.
          </p>
          <input
            aria-label="Reason for stopping"
            placeholder="Reason (optional)"
            maxLength={200}
            value={reason}
            onChange={(event) => setReason(event.target.value)}
          />{" "}
          <button type="button" className="danger" onClick={() => void stop()}>
            Yes, stop all campaigns
          </button>{" "}
          <button type="button" onClick={() => setStep({ kind: "idle" })}>
            Cancel
          </button>
        </div>
      ) : (
        <div>
          <button
            type="button"
            className="danger"
            disabled={readOnly || step.kind === "busy"}
            onClick={() => setStep({ kind: "confirming" })}
          >
            Stop all campaigns
          </button>{" "}
          <button
            type="button"
            disabled={readOnly || step.kind === "busy"}
            onClick={() => void lift()}
          >
            Lift global stop
          </button>
        </div>
      )}
      {step.kind === "done" && <p role="status">{step.message}</p>}
      {step.kind === "failed" && (
        <p role="alert" className="error">
          {step.message}
        </p>
      )}
    </div>
  );
}
