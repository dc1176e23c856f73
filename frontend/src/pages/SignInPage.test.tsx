import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { Route, Routes } from "react-router";
import { describe, expect, it } from "vitest";

import {
  Role,
  UserService,
  type SignInResponseSchema,
} from "../gen/retain/user/v1/user_pb";
import { renderWithApi, testApi } from "../test/api";
import { SignInPage } from "./SignInPage";

const LOCKED =
  "account amina@example.co.ke is locked after 5 failed sign-ins; try again at 14:05";

function renderSignIn(
  signIn: () => MessageInitShape<typeof SignInResponseSchema>,
) {
  const api = testApi((router) =>
    router.service(UserService, {
      signIn,
      signOut: () => ({}),
    }),
  );
  renderWithApi(
    <Routes>
      <Route path="/sign-in" element={<SignInPage />} />
      <Route path="/" element={<p>Overview</p>} />
    </Routes>,
    api,
    "/sign-in",
  );
  return api;
}

async function fillAndSubmit() {
  await userEvent.type(screen.getByLabelText("Email"), "amina@example.co.ke");
  await userEvent.type(
    screen.getByLabelText("Password"),
    "correct horse battery",
  );
  await userEvent.click(screen.getByRole("button", { name: "Sign in" }));
}

describe("SignInPage", () => {
  it("shows the server's error message", async () => {
    const api = renderSignIn(() => {
      throw new ConnectError(LOCKED, Code.PermissionDenied);
    });

    await fillAndSubmit();

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent(LOCKED);
    expect(alert.textContent).not.toContain("[permission_denied]");
    expect(api.auth.store.get()).toBeNull();
  });

  it("stores the session and leaves the page on success", async () => {
    const api = renderSignIn(() => ({
      accessToken: "access",
      accessTokenTtlSeconds: 900n,
      refreshToken: "refresh",
      admin: { email: "amina@example.co.ke", role: Role.ADMIN },
    }));

    await fillAndSubmit();

    expect(await screen.findByText("Overview")).toBeInTheDocument();
    expect(api.auth.store.get()?.admin.email).toBe("amina@example.co.ke");
    await api.auth.signOut();
  });
});
