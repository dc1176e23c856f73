import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [react()],
  build: {
    // The bundle is one chunk of about 880 kB minified: React, Recharts and
    // the proto descriptors. An admin tool gains little from splitting it, so
    // Vite's 500 kB warning is raised.
    chunkSizeWarningLimit: 1024,
  },
  test: {
    environment: "jsdom",
    setupFiles: ["src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
