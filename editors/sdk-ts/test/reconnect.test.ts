// An engine SIGKILLed in the middle of an activity and started again on the same home and socket: the client
// reconnects by itself, resubscribes from its last seq, and has delivered every event of the log exactly once.
// On stdio the client starts the new engine itself, as the VS Code extension does.
import assert from "node:assert/strict";
import { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { ConnectionState, Event, KeelClient, isEvent, stdio, unixSocket } from "../src/index";
import { Home, ListeningEngine, WAIT_MS, assertGapless, keelBin, unixProbe, waitFor } from "./engine";

const turn = (n: number) => ({
  text: `step ${n}`,
  delayMs: 150,
  // Distinct inputs: the same call three times in a row would ask for approval.
  toolCalls: [{ id: `call_glob_${n}`, name: "glob", input: { pattern: `*.step${n}` } }],
});
const turns = [turn(1), turn(2), turn(3), turn(4), { text: "finished", delayMs: 150 }];

test("a reconnect after an engine SIGKILL delivers every event exactly once", { timeout: WAIT_MS * 3 }, async () => {
  const home = new Home(turns);
  const socket = join(home.path, "keel.sock");
  let engine = await ListeningEngine.start(home, `unix:${socket}`, unixProbe(socket));
  const states: ConnectionState[] = [];
  const client = await KeelClient.open({
    connect: unixSocket(socket),
    reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
    onApproval: () => ({ decision: "once" }),
  });
  client.onStateChange((s) => states.push(s));
  try {
    const { session } = await client.request("session/create", { cwd: home.workspace });
    const events: Event[] = [];
    await client.follow(session.id, { afterSeq: 0, onEvent: (e) => events.push(e) });
    await client.request("session/prompt", { sessionId: session.id, input: [{ type: "text", text: "go" }] });
    await waitFor("a first tool call to complete", () => events.find((e) => isEvent(e, "tool.completed")));

    await engine.kill();
    const seenBeforeKill = events.length;
    engine = await ListeningEngine.start(home, `unix:${socket}`, unixProbe(socket));
    await waitFor("the client to reconnect", () => client.state === "connected" || undefined);

    // A turn cut by the kill may have been answered: the engine asks before sending it again.
    let decided = false;
    const closed = await waitFor("the activity to close", () => {
      const recovery = events.find((e) => isEvent(e, "recovery.required"));
      if (recovery && !decided) {
        decided = true;
        void client.request("recovery/decide", { sessionId: session.id, decision: "retry" });
      }
      return events.find((e) => isEvent(e, "activity.closed"));
    });
    assert.ok(closed);
    assert.ok(states.includes("disconnected") && states.at(-1) === "connected", `states: ${states}`);
    assert.ok(events.length > seenBeforeKill, "events after the restart were delivered");
    assertGapless(events);

    // What was delivered is the log, in full: read it back page by page.
    const log: Event[] = [];
    for (let after = 0; ; ) {
      const page = await client.request("session/events", { sessionId: session.id, afterSeq: after });
      log.push(...page.events);
      if (!page.hasMore) break;
      after = log[log.length - 1].seq;
    }
    const delivered = events.slice(0, log.length);
    assert.deepEqual(delivered.map((e) => [e.seq, e.type]), log.map((e) => [e.seq, e.type]));
  } finally {
    await client.close();
    await engine.kill();
    home.dispose();
  }
});

test("stdio: a killed engine is started again and the follower goes on from its cursor", { timeout: WAIT_MS * 3 }, async () => {
  const home = new Home([{ text: "first answer" }]);
  const children: ChildProcess[] = [];
  const client = await KeelClient.open({
    connect: stdio({ bin: keelBin(), env: home.env(), onSpawn: (child) => children.push(child) }),
    reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
  });
  try {
    const { session } = await client.request("session/create", { cwd: home.workspace });
    const events: Event[] = [];
    await client.follow(session.id, { afterSeq: 0, onEvent: (e) => events.push(e) });
    await client.request("session/prompt", { sessionId: session.id, input: [{ type: "text", text: "one" }] });
    await waitFor("the first activity to close", () => events.find((e) => isEvent(e, "activity.closed")));

    const first = children[0];
    const exited = new Promise((resolve) => first.once("exit", resolve));
    first.kill("SIGKILL");
    await exited;
    // The scripted model's place in its script is per process: the new engine plays a script of its own.
    writeFileSync(home.script, JSON.stringify({ turns: [{ text: "second answer" }] }));
    await waitFor("a new engine", () => (children.length === 2 && client.state === "connected") || undefined);
    await client.request("session/prompt", { sessionId: session.id, input: [{ type: "text", text: "two" }] });
    await waitFor("the second activity to close", () => events.filter((e) => isEvent(e, "activity.closed")).length === 2 || undefined);
    assertGapless(events);
    const texts = events.flatMap((e) => (isEvent(e, "text.completed") ? [e.data.text] : []));
    assert.deepEqual(texts, ["first answer", "second answer"]);
  } finally {
    await client.close();
    for (const child of children) child.kill("SIGKILL");
    home.dispose();
  }
});
