// Bundles the extension (Node, `vscode` external), the panel for VS Code's webview, and the same panel for the
// browser test page. Prints each bundle's size: the figures in docs/benchmarks.md.
import { build } from "esbuild";
import { statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const common = { bundle: true, minify: true, sourcemap: false, logLevel: "warning", absWorkingDir: root };
await Promise.all([
  build({
    ...common,
    entryPoints: ["src/extension.ts"],
    outfile: "dist/extension.js",
    platform: "node",
    format: "cjs",
    target: "node20",
    // `ws` loads these optional native speed-ups when present.
    external: ["vscode", "bufferutil", "utf-8-validate"],
  }),
  build({ ...common, entryPoints: ["webview/main.ts"], outfile: "dist/webview.js", platform: "browser", format: "iife", target: "es2022" }),
  build({ ...common, entryPoints: ["webview/testPage.ts"], outfile: "dist/testPage.js", platform: "browser", format: "iife", target: "es2022" }),
]);
for (const file of ["extension.js", "webview.js", "testPage.js"]) {
  console.log(`dist/${file}: ${(statSync(join(root, "dist", file)).size / 1024).toFixed(1)} KiB`);
}
