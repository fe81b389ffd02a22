// The client against the real engine on each transport: a prompt whose write asks for approval, answered by the
// client's handler, followed from cursor 0 with every event exactly once.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { Connector, Event, KeelClient, isEvent, stdio, unixSocket, webSocket } from "../src/index";
import { Home, ListeningEngine, WAIT_MS, assertGapless, freePort, keelBin, tcpProbe, unixProbe, waitFor } from "./engine";

const turns = [
  {
    text: "Writing hello.txt now.",
    toolCalls: [{ id: "call_hello", name: "write", input: { filePath: "hello.txt", content: "hi from the sdk\n" } }],
  },
  { text: "done", chunkDelayMs: 1 },
];

const engines: ListeningEngine[] = [];
after(async () => {
  for (const engine of engines) await engine.kill();
});

async function promptWithApproval(connect: Connector, home: Home) {
  const approvals: string[] = [];
  const client = await KeelClient.open({
    connect,
    clientInfo: { name: "sdk-test" },
    reconnect: false,
    onApproval: (approval) => {
      approvals.push(approval.tool);
      return { decision: "once" };
    },
  });
  try {
    const { session } = await client.request("session/create", { cwd: home.workspace, title: "sdk" });
    const events: Event[] = [];
    let synced = 0;
    await client.follow(session.id, { afterSeq: 0, onEvent: (e) => events.push(e), onSynced: () => synced++ });
    const receipt = await client.request("session/prompt", {
      sessionId: session.id,
      input: [{ type: "text", text: "Write hello.txt then say done" }],
    });
    assert.equal(receipt.disposition, "started");
    await waitFor("the activity to close", () => events.find((e) => isEvent(e, "activity.closed")));
    assert.equal(synced, 1);
    assertGapless(events);
    assert.deepEqual(approvals, ["write"]);
    const resolved = events.find((e) => isEvent(e, "approval.resolved"));
    assert.ok(resolved && isEvent(resolved, "approval.resolved"));
    assert.equal(resolved.data.decision, "once");
    const closed = events.find((e) => isEvent(e, "activity.closed"));
    assert.ok(closed && isEvent(closed, "activity.closed"));
    assert.equal(closed.data.reason, "completed");
    const texts = events.flatMap((e) => (isEvent(e, "text.completed") ? [e.data.text] : []));
    assert.deepEqual(texts, ["Writing hello.txt now.", "done"]);
    assert.equal(readFileSync(join(home.workspace, "hello.txt"), "utf8"), "hi from the sdk\n");
    const { headSeq } = await client.request("session/get", { sessionId: session.id });
    assert.equal(headSeq, events.length);
  } finally {
    await client.close();
  }
}

test("stdio: a spawned engine, a prompt, an approval", { timeout: WAIT_MS * 2 }, async () => {
  const home = new Home(turns);
  try {
    await promptWithApproval(stdio({ bin: keelBin(), env: home.env() }), home);
  } finally {
    home.dispose();
  }
});

test("unix socket: a prompt, an approval", { timeout: WAIT_MS * 2 }, async () => {
  const home = new Home(turns);
  const socket = join(home.path, "keel.sock");
  engines.push(await ListeningEngine.start(home, `unix:${socket}`, unixProbe(socket)));
  try {
    await promptWithApproval(unixSocket(socket), home);
  } finally {
    home.dispose();
  }
});

test("websocket: a prompt, an approval", { timeout: WAIT_MS * 2 }, async () => {
  const home = new Home(turns);
  const port = await freePort();
  engines.push(await ListeningEngine.start(home, `ws://127.0.0.1:${port}`, tcpProbe(port)));
  try {
    await promptWithApproval(webSocket(`ws://127.0.0.1:${port}`, { origin: "http://localhost" }), home);
  } finally {
    home.dispose();
  }
});

test("websocket: a foreign origin is refused", { timeout: WAIT_MS }, async () => {
  const home = new Home([]);
  const port = await freePort();
  engines.push(await ListeningEngine.start(home, `ws://127.0.0.1:${port}`, tcpProbe(port)));
  try {
    const connect = webSocket(`ws://127.0.0.1:${port}`, { origin: "https://evil.example" });
    await assert.rejects(KeelClient.open({ connect, reconnect: false }), /HTTP 403/);
    assert.ok(!existsSync(join(home.workspace, "hello.txt")));
  } finally {
    home.dispose();
  }
});
