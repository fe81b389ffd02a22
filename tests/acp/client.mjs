// An outside ACP client for `keel acp`, built on the official TypeScript SDK (@agentclientprotocol/sdk, stable v1).
//
//   KEEL_BIN=target/debug/keel KEEL_HOME=/tmp/home WORKSPACE=/tmp/ws node tests/acp/client.mjs
//
// It spawns `$KEEL_BIN acp`, initializes, creates a session in WORKSPACE, prompts it (answering every
// session/request_permission with allow_once), then closes that process, spawns a second one (a restart) and loads
// the same session, collecting the replayed updates. It prints one JSON object on stdout:
//   {initialize, sessionId, stopReason, updates, permissionRequests, loadedUpdates, ...extra diagnostics}
// and exits 0; on any failure it prints a message on stderr and exits 1. tests/acp.rs runs it and checks the result.
//
// `updates` and `loadedUpdates` are the `session/update` params as the SDK delivered them (parsed by its schema), in
// arrival order. The SDK's schema is lenient: it drops unknown keys and silently skips malformed fields. Every
// update is therefore also compared with the raw frame on the wire: whatever the wire carried that the SDK did not
// deliver unchanged is listed in `schemaDiffs` (defaults the SDK adds, such as `content: []`, are not differences).

import { spawn } from "node:child_process";
import { Readable, Writable } from "node:stream";
import * as acp from "@agentclientprotocol/sdk";

const TIMEOUT_MS = 20_000;
const PROMPT = "Write hello.txt then say done";

const children = new Set();

function fail(error) {
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`tests/acp/client.mjs: ${message}\n`);
  for (const child of children) child.kill("SIGKILL");
  process.exit(1);
}

function env(name) {
  const value = process.env[name];
  if (!value) fail(new Error(`${name} is not set`));
  return value;
}

const KEEL_BIN = env("KEEL_BIN");
env("KEEL_HOME");
const WORKSPACE = env("WORKSPACE");

const overall = setTimeout(() => fail(new Error(`timed out after ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS);
process.on("unhandledRejection", fail);

// The SDK logs (and otherwise ignores) a notification that fails its schema; such a log is a failure here.
const sdkErrors = [];
const consoleError = console.error;
console.error = (...args) => {
  sdkErrors.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
  consoleError(...args);
};

/** Where the current connection's messages go. */
let sink = null;

function newSink() {
  return { updates: [], raw: [], permissionRequests: [], unexpected: [], stopped: false, afterStop: 0 };
}

const app = acp
  .client({ name: "keel-acp-tests" })
  .onNotification(acp.methods.client.session.update, ({ params }) => {
    sink.updates.push(params);
    if (sink.stopped) sink.afterStop += 1;
  })
  .onRequest(acp.methods.client.session.requestPermission, ({ params }) => {
    sink.permissionRequests.push(params);
    const option = params.options.find((o) => o.kind === "allow_once");
    if (!option) throw new Error(`no allow_once option in ${JSON.stringify(params.options)}`);
    return { outcome: { outcome: "selected", optionId: option.optionId } };
  })
  .onRequest("*", ({ method, params }) => {
    sink.unexpected.push({ method, params });
    throw acp.RequestError.methodNotFound(method);
  });

/** Spawns `keel acp`, runs `op` with a connected ClientContext, then closes stdin and waits for the exit. */
async function withAgent(op) {
  const child = spawn(KEEL_BIN, ["acp"], { stdio: ["pipe", "pipe", "inherit"], env: process.env });
  children.add(child);
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  child.on("error", (e) => fail(new Error(`cannot spawn ${KEEL_BIN}: ${e.message}`)));

  const stream = acp.ndJsonStream(Writable.toWeb(child.stdin), Readable.toWeb(child.stdout));
  // Record every raw session/update in wire order, before the SDK parses it.
  const tap = new TransformStream({
    transform(message, controller) {
      if (message && message.method === "session/update" && !("id" in message)) sink.raw.push(message.params);
      controller.enqueue(message);
    },
  });
  const tapped = { writable: stream.writable, readable: stream.readable.pipeThrough(tap) };

  const result = await app.connectWith(tapped, op);
  // The connection is closed; make sure stdin is too (end of stream), then wait for the process to leave.
  if (!child.stdin.destroyed) child.stdin.end();
  const timer = new Promise((resolve) => setTimeout(() => resolve(null), 5_000));
  let exit = await Promise.race([exited, timer]);
  let exitedOnEof = true;
  if (exit === null) {
    exitedOnEof = false;
    process.stderr.write("tests/acp/client.mjs: keel acp did not exit within 5 s of stdin closing; SIGTERM\n");
    child.kill("SIGTERM");
    exit = await exited;
  }
  children.delete(child);
  return { result, exit: { ...exit, exitedOnEof } };
}

/** Whether `parsed` carries everything `raw` does, unchanged (it may add defaults). */
function covers(parsed, raw) {
  if (Array.isArray(raw)) {
    return Array.isArray(parsed) && parsed.length === raw.length && raw.every((r, i) => covers(parsed[i], r));
  }
  if (raw !== null && typeof raw === "object") {
    return parsed !== null && typeof parsed === "object" && Object.keys(raw).every((k) => covers(parsed[k], raw[k]));
  }
  return parsed === raw;
}

function schemaDiffs(which, s) {
  const diffs = [];
  if (s.raw.length !== s.updates.length) {
    diffs.push({ which, problem: `${s.raw.length} session/update frames on the wire, ${s.updates.length} delivered` });
  }
  const n = Math.min(s.raw.length, s.updates.length);
  for (let i = 0; i < n; i++) {
    if (!covers(s.updates[i], s.raw[i])) {
      diffs.push({ which, index: i, raw: s.raw[i], parsed: s.updates[i] });
    }
  }
  return diffs;
}

function initializeParams() {
  return {
    protocolVersion: acp.PROTOCOL_VERSION,
    clientCapabilities: { fs: { readTextFile: false, writeTextFile: false }, terminal: false },
    clientInfo: { name: "keel-acp-tests", version: "0.0.0" },
  };
}

async function main() {
  // 1. A session, one prompt.
  sink = newSink();
  const first = sink;
  const { result: run, exit: firstExit } = await withAgent(async (ctx) => {
    const initialize = await ctx.request(acp.methods.agent.initialize, initializeParams());
    const newSession = await ctx.request(acp.methods.agent.session.new, { cwd: WORKSPACE, mcpServers: [] });
    const response = await ctx.request(acp.methods.agent.session.prompt, {
      sessionId: newSession.sessionId,
      prompt: [{ type: "text", text: PROMPT }],
    });
    first.stopped = true;
    // A short grace period: any update arriving after the answer is counted in updatesAfterStop.
    await new Promise((resolve) => setTimeout(resolve, 100));
    return { initialize, newSession, response };
  });

  // 2. A restart: a new process loads the session.
  sink = newSink();
  const second = sink;
  const { result: loaded, exit: secondExit } = await withAgent(async (ctx) => {
    const initialize = await ctx.request(acp.methods.agent.initialize, initializeParams());
    const response = await ctx.request(acp.methods.agent.session.load, {
      sessionId: run.newSession.sessionId,
      cwd: WORKSPACE,
      mcpServers: [],
    });
    second.stopped = true;
    await new Promise((resolve) => setTimeout(resolve, 100));
    return { initialize, response };
  });

  clearTimeout(overall);
  const out = {
    initialize: run.initialize,
    sessionId: run.newSession.sessionId,
    stopReason: run.response.stopReason,
    updates: first.updates,
    permissionRequests: first.permissionRequests,
    loadedUpdates: second.updates,
    // Diagnostics.
    newSession: run.newSession,
    promptResponse: run.response,
    loadInitialize: loaded.initialize,
    loadResponse: loaded.response ?? null,
    updatesAfterStop: first.afterStop,
    loadedUpdatesAfterAnswer: second.afterStop,
    unexpectedRequests: [...first.unexpected, ...second.unexpected],
    schemaDiffs: [...schemaDiffs("prompt", first), ...schemaDiffs("load", second)],
    sdkErrors,
    exits: [firstExit, secondExit],
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().then(
  () => process.exit(0),
  (error) => fail(error),
);
