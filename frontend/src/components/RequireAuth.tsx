import type { ReactNode } from "react";
import { Navigate, useLocation } from "react-router";

import { useSession } from "../api/context";
import type { SignInState } from "../pages/SignInPage";

/** Renders `children` for a signed-in admin and sends anyone else to sign in. */
export function RequireAuth({ children }: { children: ReactNode }) {
  const session = useSession();
  const location = useLocation();
  if (session === null) {
    const state: SignInState = { from: location.pathname + location.search };
    return <Navigate to="/sign-in" replace state={state} />;
  }
  return <>{children}</>;
}
