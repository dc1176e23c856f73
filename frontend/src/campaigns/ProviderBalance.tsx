import { useCallback } from "react";

import { useApi } from "../api/context";
import { useLoad } from "../api/load";
import { LoadView } from "../components/states";
import { formatMoney } from "../format/money";

/** Shows the Africa's Talking balance, with a warning when the service flags it low. */
export function ProviderBalance() {
  const { comms } = useApi();
  const balance = useLoad(
    useCallback(
      (signal: AbortSignal) => comms.getProviderBalance({}, { signal }),
      [comms],
    ),
  );
  return (
    <LoadView state={balance} label="provider balance">
      {(response) => (
        <div className={response.low ? "card warning" : "card"}>
          <div className="muted">SMS provider balance</div>
          <div className="stat">{formatMoney(response.balance)}</div>
          {response.low && (
            <p role="alert">
              The balance is low. Top up the Africa&apos;s Talking account
              before launching, or running campaigns will pause when it runs
              out.
            </p>
          )}
        </div>
      )}
    </LoadView>
  );
}
