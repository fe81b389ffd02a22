// The VS Code extension's activation-to-ready time against the engine, and its bundle sizes. The real bundle
// (editors/vscode/dist/extension.js) is activated in Node with the tests' stand-in `vscode` module; "ready" is the
// engine started on stdio and `initialize` answered, as the extension logs it. Prints; asserts nothing.
//   cargo build --release && (cd editors/vscode && npm run build) && node benches/vscode-ready.mjs [runs]
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadExtension } from "../editors/vscode/test/fakeVscode.mjs";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const root = join(repo, "editors/vscode");
const bin = process.env.KEEL_BIN ?? join(repo, "target/release/keel");
const runs = Number(process.argv[2] ?? 20);

const home = mkdtempSync(join(tmpdir(), "keel-ready-"));
const workspace = join(home, "workspace");
mkdirSync(workspace);
const settings = { binaryPath: bin, home, defaultModel: "", connect: "" };
const times = [];
for (let i = 0; i < runs; i++) {
  const { extension, recorded, context } = loadExtension(root, { workspace, settings });
  extension.activate(context);
  const deadline = Date.now() + 15_000;
  let line;
  while (!(line = recorded.output.find((l) => l.startsWith("keel ")))) {
    if (Date.now() > deadline) throw new Error("the engine was not ready within 15 s");
    await new Promise((r) => setTimeout(r, 1));
  }
  const ms = line.match(/^keel ready in (\d+) ms/);
  if (!ms) throw new Error(line);
  times.push(Number(ms[1]));
  await extension.deactivate();
}
rmSync(home, { recursive: true, force: true });
times.sort((a, b) => a - b);
const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
console.log(`activation-to-ready over ${runs} runs (${bin}): median ${at(0.5)} ms, p95 ${at(0.95)} ms, min ${times[0]} ms`);
for (const file of ["dist/extension.js", "dist/webview.js", "dist/keel.vsix"]) {
  try {
    console.log(`${file}: ${(statSync(join(root, file)).size / 1024).toFixed(1)} KiB`);
  } catch {
    console.log(`${file}: not built (npm run package)`);
  }
}
