import { Code, type ConnectError } from "@connectrpc/connect";
import type { ReactNode } from "react";

import type { LoadState } from "../api/load";

export function Loading({ label }: { label: string }) {
  return (
    <p role="status" className="muted">
      Loading {label}…
    </p>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

/** Shows the server's message (ConnectError.rawMessage) and the status code. */
export function ErrorNotice({
  error,
  onRetry,
}: {
  error: ConnectError;
  onRetry?: () => void;
}) {
  return (
    <div role="alert" className="error">
      <span>{error.rawMessage}</span>{" "}
      <span className="muted">({Code[error.code]})</span>
      {onRetry !== undefined && (
        <button type="button" className="link" onClick={onRetry}>
          Retry
        </button>
      )}
    </div>
  );
}

/**
 * Renders the loading, error, empty or ready state of one load. `label`
 * names what is loading, and `isEmpty` decides when ready data shows the
 * `empty` text instead of `children`.
 */
export function LoadView<T>({
  state,
  label,
  isEmpty,
  empty,
  children,
}: {
  state: LoadState<T>;
  label: string;
  isEmpty?: (data: T) => boolean;
  empty?: ReactNode;
  children: (data: T) => ReactNode;
}) {
  switch (state.status) {
    case "loading":
      return <Loading label={label} />;
    case "error":
      return <ErrorNotice error={state.error} onRetry={state.reload} />;
    case "ready":
      if (isEmpty?.(state.data) === true) {
        return <Empty>{empty ?? `No ${label} yet.`}</Empty>;
      }
      return <>{children(state.data)}</>;
  }
}
