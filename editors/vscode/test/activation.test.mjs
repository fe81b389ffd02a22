// The extension's bundle (dist/extension.js) activated in Node with a stand-in for the `vscode` module, against the
// real engine it starts on stdio: activation to ready, the status bar, and the panel's host bridge (requests,
// following a session, deltas, an approval, the diff editor). Prints the activation-to-ready time.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { loadExtension } from "./fakeVscode.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const WAIT_MS = 15_000;

const home = mkdtempSync(join(tmpdir(), "keel-ext-"));
const workspace = join(home, "workspace");
mkdirSync(workspace);
writeFileSync(
  join(home, "script.json"),
  JSON.stringify({
    turns: [
      { text: "Writing it.", chunkDelayMs: 5, toolCalls: [{ id: "call_w", name: "write", input: { filePath: "a.txt", content: "a\n" } }] },
      { text: "done", chunkDelayMs: 5 },
      { text: "And another.", toolCalls: [{ id: "call_b", name: "write", input: { filePath: "b.txt", content: "b\n" } }] },
      { text: "done again" },
      { text: "A third.", toolCalls: [{ id: "call_c", name: "write", input: { filePath: "c.txt", content: "c\n" } }] },
      { text: "done a third time" },
    ],
  }),
);
process.env.KEEL_SCRIPT = join(home, "script.json");
process.env.KEEL_LOG = "warn";
delete process.env.OPENAI_API_KEY;
delete process.env.ANTHROPIC_API_KEY;

const settings = { binaryPath: process.env.KEEL_BIN, home, defaultModel: "", connect: "" };
const { extension, recorded, statusItem, context } = loadExtension(root, { workspace, settings });
const { output, executed } = recorded;
const registered = recorded;
const disposable = { dispose() {} };

async function waitFor(what, check) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

after(async () => {
  await extension.deactivate();
  rmSync(home, { recursive: true, force: true });
});

test("activation starts the engine and the panel's bridge drives a session with an approval", { timeout: WAIT_MS * 2 }, async () => {
  assert.ok(process.env.KEEL_BIN, "KEEL_BIN must name the keel binary");
  extension.activate(context);
  const ready = await waitFor("the engine to be ready", () => output.find((l) => /^keel ready in \d+ ms/.test(l)));
  console.log(`# activation-to-ready: ${ready.match(/\d+ ms/)[0]}`);
  assert.match(statusItem.text, /keel$/);
  assert.ok(registered.commands["keel.focus"] && registered.commands["keel.restartEngine"]);

  const posted = [];
  let send;
  const view = {
    webview: {
      options: {},
      html: "",
      cspSource: "vscode-webview:",
      asWebviewUri: (u) => u.fsPath,
      postMessage: async (m) => (posted.push(m), true),
      onDidReceiveMessage: (handler) => ((send = handler), disposable),
    },
    onDidDispose: () => disposable,
  };
  registered.views["keel.chat"].resolveWebviewView(view);
  assert.match(view.webview.html, /Content-Security-Policy/);
  assert.match(view.webview.html, /dist\/webview\.js/);

  send({ type: "ready" });
  const config = await waitFor("config", () => posted.find((m) => m.type === "config"));
  assert.equal(config.workspace, workspace);
  const answer = (id) => waitFor(`response ${id}`, () => posted.find((m) => m.type === "response" && m.id === id));

  send({ type: "request", id: 1, method: "session/create", params: { cwd: workspace } });
  const sessionId = (await answer(1)).result.session.id;
  send({ type: "follow", id: 2, sessionId, afterSeq: 0 });
  assert.equal((await answer(2)).error, undefined);
  const events = () => posted.filter((m) => m.type === "event" && m.followId === 2).map((m) => m.event);
  send({ type: "request", id: 3, method: "session/prompt", params: { sessionId, input: [{ type: "text", text: "go" }] } });
  const requested = await waitFor("an approval", () => events().find((e) => e.type === "approval.requested"));
  // The status bar follows `session/statusChanged`, which travels apart from the subscription's events.
  await waitFor("the status bar to show the approval", () => /waiting approval/.test(statusItem.text));
  send({ type: "request", id: 4, method: "approval/respond", params: { approvalId: requested.data.approvalId, decision: "once" } });
  await waitFor("the activity to close", () => events().find((e) => e.type === "activity.closed"));
  // The panel was not visible: the engine's approval/request was also shown as a notification.
  assert.ok(recorded.notifications.some((n) => n.message.startsWith("keel: ") && n.items.includes("Allow once")));
  const seqs = events().map((e) => e.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1), "every event once, in order");
  assert.ok(posted.some((m) => m.type === "delta"), "deltas reach the panel");
  await waitFor("a status change for the panel", () => posted.some((m) => m.type === "status" && m.status.status === "running"));
  // `session/usage` after the turn: passed to the panel, and the followed session's share shown in the status bar.
  const usage = await waitFor("session/usage for the panel", () => posted.find((m) => m.type === "usage" && m.usage.sessionId === sessionId));
  assert.ok(usage.usage.context.window > 0 && usage.usage.context.share > 0, JSON.stringify(usage.usage.context));
  await waitFor("the status bar to show the context share", () => /%\s+context/.test(statusItem.text));
  // Both turns' `session/usage` first: one arriving after the panel's context would set the share again.
  await waitFor("both turns' usage", () => posted.filter((m) => m.type === "usage" && m.usage.sessionId === sessionId).length >= 2);
  // The panel says which session it shows, with its context from `session/get`: the status bar shows that share.
  send({ type: "showing", sessionId, context: { tokens: 31_400, window: 200_000, compactAt: 180_000, share: 0.157 } });
  await waitFor("the shown session's share", () => /keel: idle · 16% context$/.test(statusItem.text));

  // Answered from the notification this time: the tool runs without the panel.
  recorded.notificationAnswer = "Allow once";
  send({ type: "request", id: 6, method: "session/prompt", params: { sessionId, input: [{ type: "text", text: "again" }] } });
  await waitFor("the second activity to close", () => events().filter((e) => e.type === "activity.closed").length === 2);
  const resolved = events().filter((e) => e.type === "approval.resolved");
  assert.equal(resolved.length, 2);
  assert.equal(resolved[1].data.decision, "once");
  assert.equal(readFileSync(join(workspace, "b.txt"), "utf8"), "b\n");

  // The panel visible on this session: it answers the approval itself, so no notification is shown.
  view.visible = true;
  recorded.notificationAnswer = "Reject";
  const notified = recorded.notifications.length;
  send({ type: "request", id: 7, method: "session/prompt", params: { sessionId, input: [{ type: "text", text: "third" }] } });
  const third = await waitFor("the third approval", () => events().filter((e) => e.type === "approval.requested")[2]);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(recorded.notifications.length, notified, "no notification while the panel shows the session");
  send({ type: "request", id: 8, method: "approval/respond", params: { approvalId: third.data.approvalId, decision: "once" } });
  await waitFor("the third activity to close", () => events().filter((e) => e.type === "activity.closed").length === 3);
  assert.equal(readFileSync(join(workspace, "c.txt"), "utf8"), "c\n");
  view.visible = false;

  send({ type: "request", id: 5, method: "no/such", params: {} });
  assert.equal((await answer(5)).error.code, -32601);

  send({ type: "openDiff", path: "src/a.txt", before: "old\n", after: "new\n" });
  const [command, left, right] = await waitFor("the diff editor", () => executed.find((c) => c[0] === "vscode.diff"));
  assert.equal(command, "vscode.diff");
  const provider = registered.providers["keel-diff"];
  assert.equal(provider.provideTextDocumentContent(left), "old\n");
  assert.equal(provider.provideTextDocumentContent(right), "new\n");
});
