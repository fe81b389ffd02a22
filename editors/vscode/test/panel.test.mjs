// The panel's UI in headless Chromium against the real engine through its WebSocket listener: a prompt streamed
// to the page, a diff shown, an approval clicked, a reload that resumes from the cursor without duplicates, and an
// engine killed and started again, a queued prompt removed, a steer; the context usage line, the agent picker from
// agent/list, live session titles, and a `task` call's subagent opened from its card.
// KEEL_BIN names the engine (tests/vscode.rs sets it); CHROMIUM the browser (default /usr/bin/chromium);
// KEEL_SCREENSHOTS, when set, is a directory where screenshots of the panel are written.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const WAIT_MS = 15_000;
const ANSWER = "Done: **hello.txt** is written. <img src=x onerror=alert(1)>\n\n```rust\nfn main() {}\n```\n";

const turns = [
  {
    text: "I will write hello.txt with a greeting for you now.",
    chunkDelayMs: 40,
    usage: { input: 1200, output: 60 },
    toolCalls: [{ id: "call_hello", name: "write", input: { filePath: "hello.txt", content: "hello from the panel\n" } }],
  },
  { text: ANSWER, chunkDelayMs: 5, usage: { input: 1300, output: 40 } },
  { text: "Still here after the reload.", chunkDelayMs: 5 },
];

// tests/vscode.rs sets this when the machine has no Chromium (CI installs it and requires the test).
const skip = process.env.KEEL_SKIP_BROWSER ? "no Chromium on this machine" : false;
let home, engine, wsPort, http, browser, page, pageUrl;

function freePort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(port) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const open = await new Promise((resolve) => {
      const s = createConnection({ host: "127.0.0.1", port });
      s.once("connect", () => (s.destroy(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`port ${port} never opened`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function startEngine() {
  engine = spawn(process.env.KEEL_BIN, ["serve", "--listen", `ws://127.0.0.1:${wsPort}`], {
    env: { ...process.env, KEEL_HOME: home, KEEL_SCRIPT: join(home, "script.json"), KEEL_LOG: "warn", OPENAI_API_KEY: "", ANTHROPIC_API_KEY: "" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  await waitForPort(wsPort);
}

before(async () => {
  if (skip) return;
  assert.ok(process.env.KEEL_BIN, "KEEL_BIN must name the keel binary");
  home = mkdtempSync(join(tmpdir(), "keel-panel-"));
  const workspace = join(home, "workspace");
  mkdirSync(workspace);
  writeFileSync(join(home, "script.json"), JSON.stringify({ turns }));
  // `writer`, a subagent on a scripted provider of its own: its session plays helper.json from the start.
  const helper = [
    { toolCalls: [{ id: "call_notes", name: "write", input: { filePath: "notes.md", content: "notes\n" } }] },
    { text: "notes.md is written." },
  ];
  writeFileSync(join(home, "helper.json"), JSON.stringify({ turns: helper }));
  writeFileSync(join(home, "config.jsonc"), JSON.stringify({
    providers: { helper: { wire: "scripted", script: join(home, "helper.json") } },
    agents: { review: { steps: 5 }, writer: { mode: "subagent", model: "helper/m", description: "writes notes" } },
  }));
  wsPort = await freePort();
  await startEngine();

  const files = {
    "/": () => ["text/html", '<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="stylesheet" href="/media/panel.css"><title>keel panel</title></head><body><div id="keel"></div><script src="/dist/testPage.js"></script></body></html>'],
    "/media/panel.css": () => ["text/css", readFileSync(join(root, "media/panel.css"))],
    "/dist/testPage.js": () => ["text/javascript", readFileSync(join(root, "dist/testPage.js"))],
  };
  http = createServer((req, res) => {
    const file = files[new URL(req.url, "http://x").pathname];
    if (!file) return res.writeHead(404).end();
    const [type, body] = file();
    res.writeHead(200, { "content-type": type }).end(body);
  });
  await new Promise((resolve) => http.listen(0, "127.0.0.1", resolve));
  pageUrl = `http://127.0.0.1:${http.address().port}/?ws=${encodeURIComponent(`ws://127.0.0.1:${wsPort}`)}&workspace=${encodeURIComponent(workspace)}`;

  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // Root in a container has no user namespace for Chromium's sandbox; the page is ours.
    args: ["--no-sandbox", "--disable-gpu", "--window-size=520,900"],
    timeout: WAIT_MS,
  });
  page = await browser.newPage();
  page.setDefaultTimeout(WAIT_MS);
  await page.setViewport({ width: 520, height: 900 });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(pageUrl);
  await page.waitForSelector("body[data-ready]");
  assert.deepEqual(errors, []);
});

after(async () => {
  await browser?.close();
  http?.close();
  engine?.kill("SIGKILL");
  if (home) rmSync(home, { recursive: true, force: true });
});

const count = (selector) => page.$$eval(selector, (nodes) => nodes.length);
const texts = (selector) => page.$$eval(selector, (nodes) => nodes.map((n) => n.textContent.trim()));

test("a prompt streams into the page, shows its diff, and waits for the approval clicked there", { skip }, async () => {
  // From agent/list: the built-in primary agents and the config's, not the subagent-only ones (general, explore).
  const agents = await texts(".agents option");
  for (const name of ["build", "plan", "review"]) assert.ok(agents.includes(name), `${name} in ${agents}`);
  for (const name of ["general", "explore", "writer"]) assert.ok(!agents.includes(name), `${name} not in ${agents}`);
  assert.equal(await page.$eval(".agents", (n) => n.value), "build");
  await page.type(".prompt", "Write hello.txt");
  await page.click(".send");
  // Streamed: the answer is shown while it is still arriving, before its durable event.
  await page.waitForSelector(".message.assistant.streaming");
  await page.waitForSelector(".approval .approve-once");
  assert.deepEqual(await texts(".tool .diff-line.added"), ["+ hello from the panel"]);
  await page.waitForFunction(() => document.querySelector(".status")?.textContent === "waiting_approval");
  if (process.env.KEEL_SCREENSHOTS) await page.screenshot({ path: join(process.env.KEEL_SCREENSHOTS, "vscode-panel-approval.png") });
  await page.click(".approval .approve-once");
  await page.waitForFunction((answer) => [...document.querySelectorAll(".message.assistant")].some((n) => n.textContent.includes(answer)), {}, "Done: hello.txt is written.");
  await page.waitForSelector('.tool[data-status="done"]');
  await page.waitForFunction(() => document.querySelector(".status")?.textContent === "idle");
  assert.equal(await page.$eval(".message.assistant strong", (n) => n.textContent), "hello.txt", "markdown rendered");
  assert.equal(await page.$eval(".message.assistant code.language-rust .hljs-keyword", (n) => n.textContent), "fn");
  assert.equal(await count(".message.assistant img"), 0, "raw HTML from the model is shown as text");
  await page.waitForFunction(() => /2\.5k in · 100 out/.test(document.querySelector(".usage")?.textContent ?? ""));
  // The context from `session/usage`: the scripted model's window is 1M tokens.
  const usage = await page.$eval(".usage", (n) => ({ text: n.textContent, share: Number(n.dataset.share) }));
  assert.match(usage.text, /\d+(\.\d)?k? of 1M \((<0\.1|\d+(\.\d)?)%\) · .* · \$\d+\.\d+$/, usage.text);
  assert.ok(usage.share > 0 && usage.share < 1, `share ${usage.share}`);
  assert.match(await page.$eval(".approval-decision", (n) => n.textContent), /^once/);
  // The session was listed as "New session" when created; its title from the first prompt (session.updated) follows.
  await page.waitForFunction(() => document.querySelector(".sessions")?.selectedOptions[0]?.textContent === "Write hello.txt");
  if (process.env.KEEL_SCREENSHOTS) await page.screenshot({ path: join(process.env.KEEL_SCREENSHOTS, "vscode-panel.png") });
});

test("a reload resumes from the cursor: everything once, and new events still arrive", { skip }, async () => {
  const before = {
    user: await texts(".message.user"),
    assistant: await texts(".message.assistant"),
    tools: await count(".tool"),
    approvals: await count(".approval"),
  };
  const { lastSeq } = await page.evaluate(() => JSON.parse(sessionStorage.getItem(sessionStorage.key(0))));
  assert.ok(lastSeq > 0);
  await page.reload();
  await page.waitForSelector("body[data-ready]");
  await page.waitForFunction(() => document.querySelector(".status")?.textContent === "idle");
  assert.deepEqual(await texts(".message.user"), before.user);
  assert.deepEqual(await texts(".message.assistant"), before.assistant);
  assert.equal(await count(".tool"), before.tools);
  assert.equal(await count(".approval"), before.approvals);

  await page.type(".prompt", "Are you there?");
  await page.click(".send");
  await page.waitForFunction(() => [...document.querySelectorAll(".message.assistant")].some((n) => n.textContent.includes("Still here")));
  await page.waitForFunction(() => document.querySelector(".status")?.textContent === "idle");
  const seqs = await page.$$eval("[data-seq]", (nodes) => nodes.map((n) => n.dataset.seq));
  assert.equal(new Set(seqs).size, seqs.length, `every rendered event once: ${seqs}`);
  assert.deepEqual(await texts(".message.user"), [...before.user, "Are you there?"]);
});

test("an engine killed and started again: the page reconnects, resumes from its cursor, and goes on", { skip }, async () => {
  const before = await page.$$eval("[data-seq]", (nodes) => nodes.length);
  const exited = new Promise((resolve) => engine.once("exit", resolve));
  engine.kill("SIGKILL");
  await exited;
  // The scripted model's place in its script is per process: the new engine plays a script of its own.
  const next = [
    // Also the answer of the subagent in the last test: the scripted model keeps a cursor per session, so a child
    // session plays the script from its start.
    { text: "Back after the engine **restarted**." },
    { text: "A slow answer.", delayMs: 1500 },
    { text: "Another slow answer.", delayMs: 1500 },
    { text: "Steered in." },
    // The last test: a `task` call (whose child answers with the first turn), then the parent's answer.
    { toolCalls: [{ id: "call_task", name: "task", input: { description: "look around", prompt: "List the files here", agent: "explore" } }] },
    { text: "The explorer found hello.txt." },
    { toolCalls: [{ id: "call_writer", name: "task", input: { description: "write notes", prompt: "Write notes.md", agent: "writer" } }] },
    { text: "The writer is done." },
  ];
  writeFileSync(join(home, "script.json"), JSON.stringify({ turns: next }));
  await startEngine();
  // The page's client reconnects by itself; a prompt sent now waits for the connection and then goes through.
  await page.type(".prompt", "And now?");
  await page.click(".send");
  await page.waitForFunction(() => [...document.querySelectorAll(".message.assistant")].some((n) => n.textContent.includes("Back after")));
  await page.waitForFunction(() => document.querySelector(".status")?.textContent === "idle");
  const seqs = await page.$$eval("[data-seq]", (nodes) => nodes.map((n) => Number(n.dataset.seq)));
  assert.equal(new Set(seqs).size, seqs.length, `every rendered event once: ${seqs}`);
  assert.ok(seqs.length > before);
});

test("a prompt queued behind a running one is shown as queued and can be removed", { skip }, async () => {
  const answersBefore = await count(".message.assistant");
  await page.type(".prompt", "Take your time");
  await page.click(".send");
  await page.waitForFunction(() => document.querySelector(".status")?.textContent === "running");
  await page.type(".prompt", "Then this");
  await page.click(".send");
  await page.waitForSelector('.message.user[data-delivery="queued"] .queue-remove');
  await page.click(".queue-remove");
  await page.waitForSelector(".message.user.removed");
  await page.waitForFunction(() => [...document.querySelectorAll(".message.assistant")].some((n) => n.textContent.includes("A slow answer")));
  await page.waitForFunction(() => document.querySelector(".status")?.textContent === "idle");
  assert.equal(await count(".queue-remove"), 0);
  assert.equal(await count(".message.assistant"), answersBefore + 1, "the removed prompt was never answered");
});

test("a steer joins the running activity", { skip }, async () => {
  await page.type(".prompt", "Take your time again");
  await page.click(".send");
  await page.waitForFunction(() => document.querySelector(".status")?.textContent === "running");
  await page.type(".prompt", "Also this");
  await page.click(".steer");
  await page.waitForSelector('.message.user[data-delivery="steered"]');
  await page.waitForFunction(() => [...document.querySelectorAll(".message.assistant")].some((n) => n.textContent.includes("Steered in.")));
  await page.waitForFunction(() => document.querySelector(".status")?.textContent === "idle");
  const answers = await texts(".message.assistant");
  assert.deepEqual(answers.slice(-2), ["Another slow answer.", "Steered in."]);
});

/** The selector of the tool card whose input mentions `text`: cards carry keel's call id, not the model's. */
async function cardOf(text) {
  const found = await page.waitForFunction(
    (t) => [...document.querySelectorAll(".tool")].find((n) => n.textContent.includes(t))?.dataset.callId,
    {},
    text,
  );
  return `.tool[data-call-id="${await found.jsonValue()}"]`;
}

test("a task call shows its subagent, whose session opens read-only; only root sessions are listed", { skip }, async () => {
  const parentId = await page.$eval(".sessions", (n) => n.value);
  assert.equal(await page.$eval(".sessions", (n) => n.selectedOptions[0].textContent), "Write hello.txt");
  await page.type(".prompt", "Delegate a look around");
  await page.click(".send");
  const card = await cardOf("look around");
  await page.waitForSelector(`${card} .subagent[data-child-session-id]`);
  await page.waitForSelector(`${card} .subagent .subagent-result[data-reason="completed"]`);
  await page.waitForFunction(() => [...document.querySelectorAll(".message.assistant")].some((n) => n.textContent.includes("The explorer found")));
  await page.waitForFunction(() => document.querySelector(".status")?.textContent === "idle");
  const sub = await page.$eval(`${card} .subagent`, (n) => ({
    child: n.dataset.childSessionId,
    agent: n.querySelector(".subagent-agent").textContent,
    description: n.querySelector(".subagent-description").textContent,
    id: n.querySelector(".subagent-id").textContent,
    answer: n.querySelector(".subagent-answer").innerHTML,
  }));
  assert.equal(sub.agent, "explore");
  assert.equal(sub.description, "look around");
  assert.equal(sub.id, sub.child);
  assert.match(sub.answer, /Back after the engine <strong>restarted<\/strong>\./, "the child's answer, as markdown");
  assert.notEqual(sub.child, parentId);
  if (process.env.KEEL_SCREENSHOTS) await (await page.$(card)).screenshot({ path: join(process.env.KEEL_SCREENSHOTS, "vscode-panel-subagent.png") });

  // The list is of root sessions: a reload of the page lists it afresh, without the child.
  await page.reload();
  await page.waitForSelector("body[data-ready]");
  const listed = await page.$$eval(".sessions option", (nodes) => nodes.map((n) => n.value));
  assert.ok(listed.includes(parentId) && !listed.includes(sub.child), `${listed}`);

  // The card opens the child's session, read-only, with the way back.
  await page.click(`${card} .open-subagent`);
  await page.waitForSelector(".subagent-banner:not([hidden]) .back-to-parent");
  await page.waitForFunction(() => [...document.querySelectorAll(".message.assistant")].some((n) => n.textContent.includes("Back after the engine restarted.")));
  assert.deepEqual(await texts(".message.user"), ["List the files here"]);
  assert.equal(await page.$eval(".sessions", (n) => n.value), sub.child);
  assert.ok(await page.$eval(".prompt", (n) => n.disabled), "no prompts into a subagent's session");
  // A reload stays on the child, read-only, from its cursor.
  await page.reload();
  await page.waitForSelector("body[data-ready]");
  await page.waitForSelector(".subagent-banner:not([hidden]) .back-to-parent");
  assert.equal(await page.$eval(".sessions", (n) => n.value), sub.child);
  assert.deepEqual(await texts(".message.user"), ["List the files here"]);
  assert.deepEqual(await texts(".message.assistant"), ["Back after the engine restarted."]);
  await page.click(".back-to-parent");
  await page.waitForFunction(() => [...document.querySelectorAll(".message.assistant")].some((n) => n.textContent.includes("The explorer found")));
  assert.equal(await page.$eval(".sessions", (n) => n.value), parentId);
  assert.ok(await page.$eval(".subagent-banner", (n) => n.hidden));
  assert.ok(!(await page.$eval(".prompt", (n) => n.disabled)));
  // "— sessions —" shows no session.
  await page.select(".sessions", "");
  await page.waitForFunction(() => document.querySelector(".status")?.textContent === "no session");
  assert.equal(await count(".transcript > *"), 0);
});

test("a subagent's approval is shown in its task card and answered there", { skip }, async () => {
  await page.select(".sessions", await page.$eval(".sessions option:nth-child(2)", (n) => n.value));
  await page.waitForFunction(() => document.querySelector(".status")?.textContent === "idle");
  await page.type(".prompt", "Have notes written");
  await page.click(".send");
  const card = await cardOf("write notes");
  // The child's write asks for approval: the panel follows the running child for it.
  await page.waitForSelector(`${card} .subagent .approval .approve-once`);
  assert.match(await page.$eval(`${card} .subagent .approval-title`, (n) => n.textContent), /notes\.md/);
  await page.click(`${card} .subagent .approval .approve-once`);
  await page.waitForSelector(`${card} .subagent .approval.resolved`);
  await page.waitForSelector(`${card} .subagent-result[data-reason="completed"]`);
  assert.match(await page.$eval(`${card} .subagent-answer`, (n) => n.textContent), /notes\.md is written\./);
  await page.waitForFunction(() => [...document.querySelectorAll(".message.assistant")].some((n) => n.textContent.includes("The writer is done.")));
  assert.equal(readFileSync(join(home, "workspace", "notes.md"), "utf8"), "notes\n");
  const seqs = await page.$$eval("[data-seq]", (nodes) => nodes.map((n) => n.dataset.seq));
  assert.equal(new Set(seqs).size, seqs.length, `every rendered event of the parent once: ${seqs}`);
});
