import { createRouterTransport, type ConnectRouter } from "@connectrpc/connect";
import { render, type RenderResult } from "@testing-library/react";
import type { ReactElement } from "react";
import { MemoryRouter } from "react-router";

import { createApi, type Api } from "../api/api";
import { ApiProvider } from "../api/context";
import { Role } from "../gen/retain/user/v1/user_pb";

/** Builds the real clients on an in-memory transport served by `routes`. */
export function testApi(routes: (router: ConnectRouter) => void): Api {
  return createApi((interceptors) =>
    createRouterTransport(routes, { transport: { interceptors } }),
  );
}

/** Puts a session in the store as if SignIn had succeeded. */
export function signInAs(
  api: Api,
  email: string,
  role: Role = Role.ADMIN,
): void {
  api.auth.store.set({
    accessToken: `access-${email}`,
    refreshToken: `refresh-${email}`,
    refreshAt: Infinity,
    admin: { email, role },
  });
}

/** Renders `ui` with the clients and a router, as the app does. */
export function renderWithApi(
  ui: ReactElement,
  api: Api,
  path = "/",
): RenderResult {
  return render(
    <ApiProvider value={api}>
      <MemoryRouter initialEntries={[path]}>{ui}</MemoryRouter>
    </ApiProvider>,
  );
}
