import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

import type { Session } from "../auth/session";

/** Methods the gateway serves without an access token. */
const PUBLIC_METHODS = new Set([
  "retain.user.v1.UserService/SignIn",
  "retain.user.v1.UserService/RefreshToken",
]);

/** Session access that the interceptor needs from the authenticator. */
export interface TokenSource {
  current(): Session | null;
  needsRefresh(session: Session): boolean;
  refresh(): Promise<boolean>;
}

/**
 * Creates an interceptor that sends `authorization: Bearer <access token>`.
 *
 * A token that is due is refreshed before the call. A unary call rejected as
 * UNAUTHENTICATED is retried once after a successful refresh. Streaming calls
 * are not retried, because their request messages are already consumed.
 */
export function authInterceptor(tokens: TokenSource): Interceptor {
  return (next) => async (request) => {
    const method = `${request.service.typeName}/${request.method.name}`;
    if (PUBLIC_METHODS.has(method)) {
      return next(request);
    }

    const session = tokens.current();
    if (session !== null && tokens.needsRefresh(session)) {
      // A failed refresh leaves the old token, and the call reports its own
      // error if that token no longer works.
      await tokens.refresh().catch(() => false);
    }
    setBearer(request.header, tokens.current());
    try {
      return await next(request);
    } catch (error) {
      const rejected = ConnectError.from(error).code === Code.Unauthenticated;
      if (!rejected || request.stream || tokens.current() === null) {
        throw error;
      }
      if (!(await tokens.refresh())) {
        throw error;
      }
      setBearer(request.header, tokens.current());
      return await next(request);
    }
  };
}

function setBearer(header: Headers, session: Session | null): void {
  if (session === null) {
    header.delete("authorization");
  } else {
    header.set("authorization", `Bearer ${session.accessToken}`);
  }
}
