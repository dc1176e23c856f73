import { NavLink, Outlet } from "react-router";

import { useApi, useSession } from "../api/context";
import { RoleSchema } from "../gen/retain/user/v1/user_pb";
import { enumLabel } from "../format/enums";

/** Renders the signed-in frame: navigation, the admin's name and Sign out. */
export function Layout() {
  const { auth } = useApi();
  const session = useSession();
  return (
    <div className="layout">
      <header>
        <strong className="brand">Retain</strong>
        <nav>
          <NavLink to="/" end>
            Overview
          </NavLink>
          <NavLink to="/at-risk">At-risk customers</NavLink>
          <NavLink to="/campaigns">Campaigns</NavLink>
        </nav>
        {session !== null && (
          <span className="who">
            {session.admin.email} ({enumLabel(RoleSchema, session.admin.role)})
            <button
              type="button"
              className="link"
              onClick={() => void auth.signOut()}
            >
              Sign out
            </button>
          </span>
        )}
      </header>
      <main>
        <Outlet />
      </main>
    </div>
  );
}
