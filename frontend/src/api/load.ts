import { ConnectError } from "@connectrpc/connect";
import { useCallback, useEffect, useState } from "react";

/** The state of one RPC (or a few chained ones) behind a page section. */
export type Loaded<T> =
  | { status: "loading" }
  | { status: "error"; error: ConnectError }
  | { status: "ready"; data: T };

export type LoadState<T> = Loaded<T> & { reload: () => void };

interface Settled<T> {
  load: unknown;
  attempt: number;
  outcome: Loaded<T>;
}

/**
 * Runs `load` and returns its state. It runs again when `load` changes (wrap
 * it in useCallback with its inputs) or when `reload` is called. The signal
 * aborts the call when the inputs change or the component unmounts.
 */
export function useLoad<T>(
  load: (signal: AbortSignal) => Promise<T>,
): LoadState<T> {
  const [attempt, setAttempt] = useState(0);
  const [settled, setSettled] = useState<Settled<T> | null>(null);

  useEffect(() => {
    const controller = new AbortController();
    const finish = (outcome: Loaded<T>) => {
      if (!controller.signal.aborted) {
        setSettled({ load, attempt, outcome });
      }
    };
    load(controller.signal).then(
      (data) => finish({ status: "ready", data }),
      (error: unknown) =>
        finish({ status: "error", error: ConnectError.from(error) }),
    );
    return () => controller.abort();
  }, [load, attempt]);

  const reload = useCallback(() => setAttempt((n) => n + 1), []);
  const current =
    settled !== null && settled.load === load && settled.attempt === attempt
      ? settled.outcome
      : { status: "loading" as const };
  return { ...current, reload };
}

/** Returns the message to show for a failed call: the server's own words. */
export function errorText(error: unknown): string {
  return ConnectError.from(error).rawMessage;
}
