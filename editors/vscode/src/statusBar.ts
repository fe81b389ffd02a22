import * as vscode from "vscode";
import type { ConnectionState, SessionStatus } from "../../sdk-ts/src/index";

/** One item: the engine connection, or the status of the session the panel shows. */
export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);

  constructor() {
    this.item.command = "keel.focus";
    this.connection("connecting");
    this.item.show();
  }

  connection(state: ConnectionState) {
    const icon = state === "connected" ? "$(hubot)" : state === "closed" ? "$(error)" : "$(sync~spin)";
    this.item.text = `${icon} keel${state === "connected" ? "" : `: ${state}`}`;
    this.item.tooltip = `keel engine: ${state}`;
  }

  session(status: SessionStatus) {
    const icon = status === "running" ? "$(sync~spin)" : status === "waiting_approval" ? "$(bell-dot)" : "$(hubot)";
    this.item.text = `${icon} keel: ${status.replace("_", " ")}`;
  }

  dispose() {
    this.item.dispose();
  }
}
