import js from "@eslint/js";
import reactHooks from "eslint-plugin-react-hooks";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  // src/gen is written by protoc-gen-es and never edited by hand.
  { ignores: ["dist", "node_modules", "src/gen"] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  reactHooks.configs.flat.recommended,
  {
    languageOptions: { globals: globals.browser },
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
    },
  },
  // The browser walkthrough runs in Node and drives Chromium from outside.
  { files: ["e2e/**"], languageOptions: { globals: globals.node } },
);
