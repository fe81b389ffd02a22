// `keel acp` figures: cold start (spawn → initialize answered, spawn → session/new answered), warm prompt turns
// in one long-lived process, and peak RSS (VmHWM). The model is an instant mock in this process that answers every
// Chat Completions request with a short SSE stream, so the figures are keel's own cost plus stdio and loopback HTTP.
//
//   cargo build --release && node benches/acp.mjs        # KEEL_BIN=path/to/keel to measure another binary
//
// The client here is a bare newline-delimited JSON-RPC client with no dependencies (the SDK-based conformance test
// is tests/acp/client.mjs), so nothing but keel and the pipes is in the measurement. Linux only (reads /proc).

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { createServer } from "node:http";
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const KEEL_BIN = resolve(process.env.KEEL_BIN ?? join(ROOT, "target/release/keel"));
const COLD_RUNS = 20;
const WARM_TURNS = 50;
const TIMEOUT_MS = 180_000;
const PIECES = ["Hello", " from", " the", " mock", " model."];
const TEXT = PIECES.join("");

if (!existsSync(KEEL_BIN)) {
  console.error(`benches/acp.mjs: ${KEEL_BIN} does not exist (cargo build --release, or set KEEL_BIN)`);
  process.exit(1);
}

const children = new Set();
function fail(error) {
  console.error(`benches/acp.mjs: ${error instanceof Error ? (error.stack ?? error.message) : error}`);
  for (const child of children) child.kill("SIGKILL");
  process.exit(1);
}
const overall = setTimeout(() => fail(new Error(`timed out after ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS);
process.on("unhandledRejection", fail);

// The instant mock model: OpenAI Chat Completions over SSE.
let modelRequests = 0;
function chunk(delta, finish = null) {
  return { id: "chatcmpl-bench", object: "chat.completion.chunk", created: 1, model: "m",
           choices: [{ index: 0, delta, finish_reason: finish }] };
}
const SSE = [
  chunk({ role: "assistant", content: "" }),
  ...PIECES.map((p) => chunk({ content: p })),
  chunk({}, "stop"),
  { id: "chatcmpl-bench", object: "chat.completion.chunk", created: 1, model: "m", choices: [],
    usage: { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 } },
].map((c) => `data: ${JSON.stringify(c)}\n\n`).join("") + "data: [DONE]\n\n";

const server = createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    if (req.method !== "POST" || !req.url.endsWith("/chat/completions")) {
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"message":"not found"}}');
      return;
    }
    modelRequests += 1;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.end(SSE);
  });
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const port = server.address().port;

// A home and a workspace of its own.
const home = mkdtempSync(join(tmpdir(), "keel-acp-bench-"));
const workspace = join(home, "workspace");
mkdirSync(workspace);
writeFileSync(join(home, "config.jsonc"), JSON.stringify({
  model: "mock/m",
  providers: { mock: { wire: "openai-chat", baseUrl: `http://127.0.0.1:${port}/v1` } },
}));
const env = { ...process.env, KEEL_HOME: home, KEEL_LOG: process.env.KEEL_LOG ?? "warn" };
delete env.OPENAI_API_KEY;
delete env.ANTHROPIC_API_KEY;

/** `keel acp` with a minimal NDJSON JSON-RPC client on its pipes. */
class Agent {
  constructor() {
    this.t0 = performance.now();
    this.child = spawn(KEEL_BIN, ["acp"], { env, stdio: ["pipe", "pipe", "pipe"] });
    children.add(this.child);
    this.stderr = "";
    this.child.stderr.on("data", (d) => { this.stderr += d; });
    this.child.on("error", fail);
    this.exited = new Promise((r) => this.child.on("exit", (code, signal) => r({ code, signal })));
    this.nextId = 1;
    this.pending = new Map();
    this.updates = [];
    createInterface({ input: this.child.stdout }).on("line", (line) => this.receive(line));
  }

  receive(line) {
    if (!line.trim()) return;
    const m = JSON.parse(line);
    if (m.method === "session/update") {
      this.updates.push(m.params);
    } else if (m.method && m.id !== undefined) {
      // No tools run in this benchmark, so the agent should ask nothing.
      fail(new Error(`unexpected request from keel: ${line}`));
    } else if (m.id !== undefined && this.pending.has(m.id)) {
      const { resolve, reject, method } = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) reject(new Error(`${method}: ${JSON.stringify(m.error)}\n${this.stderr}`));
      else resolve(m.result);
    }
  }

  request(method, params) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.child.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", id, method, params })}\n`);
    });
  }

  initialize() {
    return this.request("initialize", {
      protocolVersion: 1,
      clientCapabilities: { fs: { readTextFile: false, writeTextFile: false }, terminal: false },
      clientInfo: { name: "keel-acp-bench", version: "0.0.0" },
    });
  }

  /** Peak resident set size so far, in KiB. */
  vmHwmKiB() {
    const status = readFileSync(`/proc/${this.child.pid}/status`, "utf8");
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)[1]);
  }

  async close() {
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    const exit = await this.exited;
    clearTimeout(timer);
    children.delete(this.child);
    if (exit.code !== 0) fail(new Error(`keel acp exited with ${JSON.stringify(exit)}\n${this.stderr}`));
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
const percentile = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)];

// Cold starts. One run first creates the database and is not counted.
const initMs = [];
const newMs = [];
const coldHwm = [];
for (let i = 0; i <= COLD_RUNS; i++) {
  const agent = new Agent();
  const init = await agent.initialize();
  const tInit = performance.now() - agent.t0;
  if (init.protocolVersion !== 1) fail(new Error(`initialize answered ${JSON.stringify(init)}`));
  const created = await agent.request("session/new", { cwd: workspace, mcpServers: [] });
  const tNew = performance.now() - agent.t0;
  if (!created.sessionId) fail(new Error(`session/new answered ${JSON.stringify(created)}`));
  const hwm = agent.vmHwmKiB();
  await agent.close();
  if (i === 0) continue;
  initMs.push(tInit);
  newMs.push(tNew);
  coldHwm.push(hwm);
}

// Warm turns in one process.
const agent = new Agent();
await agent.initialize();
const { sessionId } = await agent.request("session/new", { cwd: workspace, mcpServers: [] });
const turnMs = [];
const before = modelRequests;
for (let i = 0; i <= WARM_TURNS; i++) {
  agent.updates = [];
  const t = performance.now();
  const answer = await agent.request("session/prompt", { sessionId, prompt: [{ type: "text", text: `turn ${i}` }] });
  const ms = performance.now() - t;
  if (answer.stopReason !== "end_turn") fail(new Error(`turn ${i} stopped with ${JSON.stringify(answer)}`));
  const text = agent.updates
    .filter((u) => u.update.sessionUpdate === "agent_message_chunk")
    .map((u) => u.update.content.text)
    .join("");
  if (text !== TEXT) fail(new Error(`turn ${i} streamed ${JSON.stringify(text)}, not ${JSON.stringify(TEXT)}`));
  if (i > 0) turnMs.push(ms); // the first turn warms the provider's connection pool
}
if (modelRequests - before !== WARM_TURNS + 1) fail(new Error(`${modelRequests - before} model requests`));
const warmHwm = agent.vmHwmKiB();
await agent.close();

clearTimeout(overall);
server.close();
rmSync(home, { recursive: true, force: true });

const ms = (x) => `${x.toFixed(1)} ms`;
const mib = (kib) => `${(kib / 1024).toFixed(1)} MiB`;
const rows = [
  ["spawn → initialize answered", `median of ${COLD_RUNS}`, ms(median(initMs)), `min ${ms(Math.min(...initMs))}`],
  ["spawn → session/new answered", `median of ${COLD_RUNS}`, ms(median(newMs)), `min ${ms(Math.min(...newMs))}`],
  ["warm session/prompt turn", `median of ${WARM_TURNS}`, ms(median(turnMs)), `p90 ${ms(percentile(turnMs, 90))}`],
  ["peak RSS (VmHWM), cold after session/new", `median of ${COLD_RUNS}`, mib(median(coldHwm)), ""],
  ["peak RSS (VmHWM), after the warm turns", "1 process", mib(warmHwm), ""],
];
const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c].length)));
console.log(`keel acp  (${KEEL_BIN}, node ${process.version}, instant mock model)`);
for (const r of rows) console.log(r.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd());
