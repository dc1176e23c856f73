import { Code, ConnectError, type Client } from "@connectrpc/connect";

import type { UserService } from "../gen/retain/user/v1/user_pb";
import type { TokenSource } from "../api/interceptor";
import type { Session, SessionAdmin, SessionStore } from "./session";

/**
 * How long before the access token expires the session refreshes it. Tokens
 * that live less than twice this long are refreshed at half their lifetime.
 */
export const REFRESH_MARGIN_MS = 60_000;

type UserClient = Client<typeof UserService>;

/** The part of the Web Storage API that keeps a tab's session over a reload. */
export type SessionMemory = Pick<Storage, "getItem" | "setItem" | "removeItem">;

/** The key under which a tab keeps its refresh token and admin. */
export const SESSION_KEY = "retain.session";

interface SavedSession {
  refreshToken: string;
  admin: SessionAdmin;
}

function browserMemory(): SessionMemory | null {
  return typeof sessionStorage === "undefined" ? null : sessionStorage;
}

/**
 * Signs the admin in and out and keeps the access token fresh.
 *
 * A timer refreshes the token REFRESH_MARGIN_MS before it expires. The
 * transport's interceptor also refreshes a token that is due before a call,
 * in case the timer ran late in a sleeping tab, and after a call is rejected
 * as UNAUTHENTICATED. Concurrent refreshes share one RefreshToken call, because
 * the server replaces the refresh token on every use.
 *
 * The refresh token and the admin are also kept in the tab's sessionStorage,
 * so a reload resumes the session. The access token stays in memory only.
 * Closing the tab forgets the session, and signing out deletes it.
 */
export class Authenticator implements TokenSource {
  #refreshing: Promise<boolean> | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly store: SessionStore,
    private readonly users: () => UserClient,
    private readonly now: () => number = Date.now,
    private readonly memory: SessionMemory | null = browserMemory(),
  ) {}

  /**
   * Resumes the session this tab saved before a reload. Its access token is
   * empty and due, so the first call refreshes it, and a rejected refresh
   * token ends the session.
   */
  resume(): void {
    const saved = this.#saved();
    if (saved !== null && this.store.get() === null) {
      this.store.set({ ...saved, accessToken: "", refreshAt: 0 });
    }
  }

  /** Calls SignIn and starts the session. Rejects with the server's ConnectError. */
  async signIn(email: string, password: string): Promise<void> {
    const response = await this.users().signIn({ email, password });
    const admin = response.admin;
    if (admin === undefined) {
      throw new ConnectError(
        "SignIn response has no admin; the user service must return the admin with the tokens",
        Code.Internal,
      );
    }
    this.#start({
      accessToken: response.accessToken,
      refreshToken: response.refreshToken,
      refreshAt: this.#refreshAt(response.accessTokenTtlSeconds),
      admin: { email: admin.email, role: admin.role },
    });
  }

  /**
   * Exchanges the refresh token for a new access token.
   *
   * Resolves to false, and ends the session, when the server rejects the
   * refresh token. Rejects on other failures, such as an unreachable gateway,
   * and keeps the session so a later call can try again.
   */
  refresh(): Promise<boolean> {
    this.#refreshing ??= this.#refreshOnce().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  /** Returns the current session, or null when signed out. */
  current(): Session | null {
    return this.store.get();
  }

  /** True when the session's access token is due for a refresh. */
  needsRefresh(session: Session): boolean {
    return this.now() >= session.refreshAt;
  }

  /** Revokes the refresh token and ends the session, even if SignOut fails. */
  async signOut(): Promise<void> {
    const session = this.store.get();
    if (session === null) {
      return;
    }
    try {
      // The call still carries the access token, in case the gateway
      // requires one for SignOut.
      await this.users().signOut({ refreshToken: session.refreshToken });
    } catch (error) {
      // The local session ends either way, and the access token expires on
      // its own.
      console.warn("SignOut failed:", ConnectError.from(error).rawMessage);
    } finally {
      this.#end();
    }
  }

  async #refreshOnce(): Promise<boolean> {
    const session = this.store.get();
    if (session === null) {
      return false;
    }
    try {
      const response = await this.users().refreshToken({
        refreshToken: session.refreshToken,
      });
      this.#start({
        ...session,
        accessToken: response.accessToken,
        refreshToken: response.refreshToken || session.refreshToken,
        refreshAt: this.#refreshAt(response.accessTokenTtlSeconds),
      });
      return true;
    } catch (error) {
      const code = ConnectError.from(error).code;
      if (code === Code.Unauthenticated || code === Code.PermissionDenied) {
        this.#end();
        return false;
      }
      throw error;
    }
  }

  #start(session: Session): void {
    clearTimeout(this.#timer);
    this.store.set(session);
    const saved: SavedSession = {
      refreshToken: session.refreshToken,
      admin: session.admin,
    };
    this.memory?.setItem(SESSION_KEY, JSON.stringify(saved));
    if (session.refreshAt === Infinity) {
      return;
    }
    this.#timer = setTimeout(() => {
      this.refresh().catch((error: unknown) => {
        // The interceptor refreshes again on the next UNAUTHENTICATED reply.
        console.warn(
          "Token refresh failed:",
          ConnectError.from(error).rawMessage,
        );
      });
    }, session.refreshAt - this.now());
  }

  #end(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.store.set(null);
    this.memory?.removeItem(SESSION_KEY);
  }

  #saved(): SavedSession | null {
    const text = this.memory?.getItem(SESSION_KEY);
    if (text === null || text === undefined) {
      return null;
    }
    try {
      const saved = JSON.parse(text) as Partial<SavedSession>;
      if (
        typeof saved.refreshToken === "string" &&
        typeof saved.admin?.email === "string" &&
        typeof saved.admin.role === "number"
      ) {
        return { refreshToken: saved.refreshToken, admin: saved.admin };
      }
    } catch {
      // A damaged entry is dropped below, and the admin signs in again.
    }
    this.memory?.removeItem(SESSION_KEY);
    return null;
  }

  #refreshAt(ttlSeconds: bigint): number {
    const ttl = Number(ttlSeconds) * 1000;
    if (ttl <= 0) {
      return Infinity;
    }
    const lead = ttl > 2 * REFRESH_MARGIN_MS ? REFRESH_MARGIN_MS : ttl / 2;
    return this.now() + ttl - lead;
  }
}
