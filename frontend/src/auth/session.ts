import type { Role } from "../gen/retain/user/v1/user_pb";

/** The signed-in admin, as SignIn returned it. */
export interface SessionAdmin {
  email: string;
  role: Role;
}

/** Tokens of the signed-in admin. They live in memory only, never in storage. */
export interface Session {
  accessToken: string;
  refreshToken: string;
  /**
   * Milliseconds since the Unix epoch after which the access token should be
   * refreshed before use, or Infinity when the server gave no lifetime.
   */
  refreshAt: number;
  admin: SessionAdmin;
}

/**
 * Holds the current session and notifies subscribers when it changes.
 *
 * `get` and `subscribe` are bound, so they can be passed straight to React's
 * useSyncExternalStore.
 */
export class SessionStore {
  #session: Session | null = null;
  readonly #listeners = new Set<() => void>();

  get = (): Session | null => this.#session;

  subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  };

  set(session: Session | null): void {
    this.#session = session;
    for (const listener of this.#listeners) {
      listener();
    }
  }
}
