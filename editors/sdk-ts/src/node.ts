// Connectors for Node: a spawned `keel serve` on stdio, a Unix socket, a WebSocket (the `ws` package).
import { ChildProcess, spawn } from "node:child_process";
import { createConnection } from "node:net";
import { SocketMessageReader, SocketMessageWriter, StreamMessageReader, StreamMessageWriter } from "vscode-jsonrpc/node";
import WebSocket from "ws";
import { Connector, Transport, webSocketTransport } from "./transport";
import type { WebSocketLike } from "./websocket";

export interface SpawnOptions {
  /** The keel binary (default `keel` on PATH). */
  bin?: string;
  /** Extra arguments after `serve`. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Called with each engine process started, e.g. to kill it in a test or to watch its exit. */
  onSpawn?: (child: ChildProcess) => void;
}

/** Spawns `keel serve` on stdio; a reconnection starts a new engine process, which resumes what the last one left. */
export function stdio(options: SpawnOptions = {}): Connector {
  return async () => {
    const child = spawn(options.bin ?? "keel", ["serve", ...(options.args ?? [])], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["pipe", "pipe", "inherit"],
    });
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
    options.onSpawn?.(child);
    const stdin = child.stdin!;
    const stdout = child.stdout!;
    return {
      reader: new StreamMessageReader(stdout),
      writer: new StreamMessageWriter(stdin),
      // Closing stdin lets the engine suspend running work at a safe point and exit by itself.
      dispose: () => stdin.end(),
    };
  };
}

/** Connects to `keel serve --listen unix:PATH`. */
export function unixSocket(path: string): Connector {
  return () =>
    new Promise<Transport>((resolve, reject) => {
      const socket = createConnection(path);
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve({
          reader: new SocketMessageReader(socket),
          writer: new SocketMessageWriter(socket),
          dispose: () => socket.destroy(),
        });
      });
    });
}

export interface WebSocketOptions {
  /** Sent as `Authorization: Bearer` in the upgrade, for listeners beyond loopback. */
  token?: string;
  /** An `Origin` header, as a browser would send. */
  origin?: string;
}

/** Connects to `keel serve --listen ws://HOST:PORT`. */
export function webSocket(url: string, options: WebSocketOptions = {}): Connector {
  return () =>
    new Promise<Transport>((resolve, reject) => {
      const headers: Record<string, string> = {};
      if (options.token) headers.authorization = `Bearer ${options.token}`;
      const socket = new WebSocket(url, { headers, origin: options.origin });
      socket.once("error", reject);
      socket.once("unexpected-response", (_request, response) =>
        reject(new Error(`the WebSocket upgrade was refused: HTTP ${response.statusCode}`)),
      );
      socket.once("open", () => {
        socket.off("error", reject);
        resolve(webSocketTransport(socket as unknown as WebSocketLike));
      });
    });
}
