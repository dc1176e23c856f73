import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";

import { CommsService } from "../gen/retain/comms/v1/comms_pb";
import { Role, UserService } from "../gen/retain/user/v1/user_pb";
import { SESSION_KEY } from "../auth/authenticator";
import { testApi } from "../test/api";

/** Creates a gateway stand-in that accepts one access token and records each call. */
function gateway(
  validToken: { current: string },
  refreshOutcome: "ok" | "revoked",
) {
  const seen: { method: string; authorization: string | null }[] = [];
  const routes = (router: ConnectRouter) => {
    router.service(UserService, {
      signIn(_request, context) {
        seen.push({
          method: "SignIn",
          authorization: context.requestHeader.get("authorization"),
        });
        return {
          accessToken: "token-1",
          accessTokenTtlSeconds: 900n,
          refreshToken: "refresh-1",
          admin: { email: "amina@example.co.ke", role: Role.ADMIN },
        };
      },
      refreshToken(request) {
        seen.push({ method: "RefreshToken", authorization: null });
        if (
          refreshOutcome === "revoked" ||
          request.refreshToken !== "refresh-1"
        ) {
          throw new ConnectError(
            "refresh token was revoked",
            Code.Unauthenticated,
          );
        }
        validToken.current = "token-2";
        return {
          accessToken: "token-2",
          accessTokenTtlSeconds: 900n,
          refreshToken: "refresh-2",
        };
      },
      signOut: () => ({}),
    });
    router.service(CommsService, {
      getProviderBalance(_request, context) {
        const authorization = context.requestHeader.get("authorization");
        seen.push({ method: "GetProviderBalance", authorization });
        if (authorization !== `Bearer ${validToken.current}`) {
          throw new ConnectError("access token expired", Code.Unauthenticated);
        }
        return { balance: { currencyCode: "KES", amountMicros: 1_000_000n } };
      },
    });
  };
  return { seen, routes };
}

describe("authInterceptor", () => {
  it("sends the access token on calls but not on SignIn", async () => {
    const { seen, routes } = gateway({ current: "token-1" }, "ok");
    const api = testApi(routes);

    await api.auth.signIn("amina@example.co.ke", "correct horse battery");
    await api.comms.getProviderBalance({});

    expect(seen).toEqual([
      { method: "SignIn", authorization: null },
      { method: "GetProviderBalance", authorization: "Bearer token-1" },
    ]);
    await api.auth.signOut();
  });

  it("refreshes and retries once after UNAUTHENTICATED", async () => {
    const valid = { current: "token-1" };
    const { seen, routes } = gateway(valid, "ok");
    const api = testApi(routes);
    await api.auth.signIn("amina@example.co.ke", "correct horse battery");
    valid.current = "rotated-by-server";

    const response = await api.comms.getProviderBalance({});

    expect(response.balance?.amountMicros).toBe(1_000_000n);
    expect(seen.map((call) => call.method)).toEqual([
      "SignIn",
      "GetProviderBalance",
      "RefreshToken",
      "GetProviderBalance",
    ]);
    expect(seen[3]?.authorization).toBe("Bearer token-2");
    expect(api.auth.store.get()?.refreshToken).toBe("refresh-2");
    await api.auth.signOut();
  });

  it("ends the session when the refresh token is rejected", async () => {
    const valid = { current: "token-1" };
    const { routes } = gateway(valid, "revoked");
    const api = testApi(routes);
    await api.auth.signIn("amina@example.co.ke", "correct horse battery");
    valid.current = "rotated-by-server";

    const call = api.comms.getProviderBalance({});

    await expect(call).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(api.auth.store.get()).toBeNull();
  });
});

describe("a reloaded tab", () => {
  it("resumes the session with a fresh access token", async () => {
    const valid = { current: "token-1" };
    const { seen, routes } = gateway(valid, "ok");
    await testApi(routes).auth.signIn("amina@example.co.ke", "pass phrase");

    const reloaded = testApi(routes);
    const response = await reloaded.comms.getProviderBalance({});

    expect(reloaded.auth.store.get()?.admin.email).toBe("amina@example.co.ke");
    expect(response.balance?.amountMicros).toBe(1_000_000n);
    expect(seen.map((call) => call.method)).toEqual([
      "SignIn",
      "RefreshToken",
      "GetProviderBalance",
    ]);
    expect(seen[2]?.authorization).toBe("Bearer token-2");
    expect(sessionStorage.getItem(SESSION_KEY)).toContain("refresh-2");
    expect(sessionStorage.getItem(SESSION_KEY)).not.toContain("token-2");
  });

  it("signs in again when the saved refresh token is revoked", async () => {
    const { routes } = gateway({ current: "token-1" }, "revoked");
    await testApi(routes).auth.signIn("amina@example.co.ke", "pass phrase");

    const reloaded = testApi(routes);
    const call = reloaded.comms.getProviderBalance({});

    await expect(call).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(reloaded.auth.store.get()).toBeNull();
    expect(sessionStorage.getItem(SESSION_KEY)).toBeNull();
  });

  it("stays signed out after signing out", async () => {
    const { routes } = gateway({ current: "token-1" }, "ok");
    const api = testApi(routes);
    await api.auth.signIn("amina@example.co.ke", "pass phrase");
    await api.auth.signOut();

    expect(testApi(routes).auth.store.get()).toBeNull();
  });

  it("drops a damaged saved session", () => {
    sessionStorage.setItem(SESSION_KEY, "{not json");

    expect(
      testApi(gateway({ current: "" }, "ok").routes).auth.store.get(),
    ).toBeNull();
    expect(sessionStorage.getItem(SESSION_KEY)).toBeNull();
  });
});
