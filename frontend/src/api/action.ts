import { ConnectError } from "@connectrpc/connect";
import { useCallback, useState } from "react";

/** The state of a call the user starts with a button. */
export type ActionState<T> =
  | { status: "idle" }
  | { status: "busy" }
  | { status: "done"; data: T }
  | { status: "failed"; error: ConnectError };

/** Tracks one user-started call. `run` resolves once the state is updated. */
export function useAction<T>(): [
  ActionState<T>,
  (call: () => Promise<T>) => Promise<void>,
] {
  const [state, setState] = useState<ActionState<T>>({ status: "idle" });
  const run = useCallback(async (call: () => Promise<T>) => {
    setState({ status: "busy" });
    try {
      setState({ status: "done", data: await call() });
    } catch (error) {
      setState({ status: "failed", error: ConnectError.from(error) });
    }
  }, []);
  return [state, run];
}
