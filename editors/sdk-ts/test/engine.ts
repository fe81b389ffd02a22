// Test helpers: the real keel binary (KEEL_BIN, set by tests/sdk_ts.rs), a temporary home with a scripted model,
// engines on a Unix socket or a WebSocket port, and waits that always time out.
import assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Event } from "../src/index";

export const WAIT_MS = 15_000;

export function keelBin(): string {
  const bin = process.env.KEEL_BIN;
  assert.ok(bin, "KEEL_BIN must name the keel binary (cargo test --test sdk_ts sets it)");
  return bin;
}

/** A KEEL_HOME, a workspace and a script for the offline scripted provider, removed by `dispose`. */
export class Home {
  readonly path = mkdtempSync(join(tmpdir(), "keel-sdk-"));
  readonly workspace = join(this.path, "workspace");
  readonly script = join(this.path, "script.json");

  constructor(turns: unknown[]) {
    mkdirSync(this.workspace);
    writeFileSync(this.script, JSON.stringify({ turns }));
  }

  env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, KEEL_HOME: this.path, KEEL_SCRIPT: this.script, KEEL_LOG: "warn" };
    delete env.OPENAI_API_KEY;
    delete env.ANTHROPIC_API_KEY;
    return env;
  }

  dispose() {
    rmSync(this.path, { recursive: true, force: true });
  }
}

export async function waitFor<T>(what: string, check: () => T | undefined, ms = WAIT_MS): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** `keel serve --listen SPEC` as a child process, ready once `probe` connects. */
export class ListeningEngine {
  private constructor(readonly child: ChildProcess) {}

  static async start(home: Home, listen: string, probe: () => Promise<boolean>): Promise<ListeningEngine> {
    const child = spawn(keelBin(), ["serve", "--listen", listen], { env: home.env(), stdio: ["ignore", "ignore", "inherit"] });
    const deadline = Date.now() + WAIT_MS;
    while (!(await probe())) {
      if (Date.now() > deadline) throw new Error(`keel serve --listen ${listen} never became ready`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return new ListeningEngine(child);
  }

  /** SIGKILL: no shutdown, like a crash. */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGKILL");
    await exited;
  }
}

export const unixProbe = (path: string) => () =>
  new Promise<boolean>((resolve) => {
    const s = createConnection(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });

export const tcpProbe = (port: number) => () =>
  new Promise<boolean>((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** Asserts the delivered events are seq 1..n, each once, in order. */
export function assertGapless(events: Event[]) {
  const seqs = events.map((e) => e.seq);
  assert.deepEqual(
    seqs,
    seqs.map((_, i) => i + 1),
    "every event exactly once, in seq order",
  );
}
