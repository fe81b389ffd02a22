// tsc checks the types (against @types/vscode); this checks what tsc does not.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

const browser = ["window", "document", "location", "sessionStorage", "URL", "URLSearchParams", "MessageEvent", "HTMLElement", "HTMLOptionElement", "HTMLElementTagNameMap", "WebSocket", "TextDecoder"];
const node = ["process", "console", "setTimeout", "Buffer", "NodeJS"];

export default tseslint.config(
  { ignores: ["dist/", "node_modules/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  { languageOptions: { globals: Object.fromEntries([...browser, ...node].map((name) => [name, "readonly"])) } },
);
