import { createContext, useContext, useSyncExternalStore } from "react";

import type { Session } from "../auth/session";
import type { Api } from "./api";

const ApiContext = createContext<Api | null>(null);

export const ApiProvider = ApiContext.Provider;

/** Returns the clients from the nearest ApiProvider. */
export function useApi(): Api {
  const api = useContext(ApiContext);
  if (api === null) {
    throw new Error("useApi needs an <ApiProvider> above the component");
  }
  return api;
}

/** Returns the current session and re-renders when it changes. */
export function useSession(): Session | null {
  const { store } = useApi().auth;
  return useSyncExternalStore(store.subscribe, store.get);
}
