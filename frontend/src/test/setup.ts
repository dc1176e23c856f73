import "@testing-library/jest-dom/vitest";
import { cleanup } from "@testing-library/react";
import { afterEach } from "vitest";

afterEach(() => {
  cleanup();
  // The authenticator keeps the session here; each test starts signed out.
  sessionStorage.clear();
});
