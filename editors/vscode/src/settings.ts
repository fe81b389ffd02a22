import * as vscode from "vscode";

export interface Settings {
  /** The keel binary to start (default `keel` on PATH). */
  binaryPath: string;
  /** KEEL_HOME for a started engine ("" keeps keel's default). */
  home: string;
  /** The model the panel preselects ("" for the engine's configured default). */
  defaultModel: string;
  /** An engine to connect to instead of starting one: `unix:PATH` or `ws://HOST:PORT`. */
  connect: string;
}

export function readSettings(): Settings {
  const config = vscode.workspace.getConfiguration("keel");
  return {
    binaryPath: config.get<string>("binaryPath") || "keel",
    home: config.get<string>("home") ?? "",
    defaultModel: config.get<string>("defaultModel") ?? "",
    connect: config.get<string>("connect") ?? "",
  };
}
