// tsc checks the types; this checks what tsc does not (unused expressions, misused promises' shapes, etc.).
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "src/generated/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  { languageOptions: { globals: { process: "readonly", console: "readonly", setTimeout: "readonly", TextDecoder: "readonly", WebSocket: "readonly", NodeJS: "readonly" } } },
);
