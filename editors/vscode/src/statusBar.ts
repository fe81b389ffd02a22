import * as vscode from "vscode";
import type { ConnectionState, SessionStatus } from "../../sdk-ts/src/index";
import { percent } from "../webview/usage";

/** One item: the engine connection, or the status of the session the panel shows and how full its context is. */
export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  private status: SessionStatus | undefined;
  /** The active session's share of its model's context window, when known. */
  private share: number | undefined;

  constructor() {
    this.item.command = "keel.focus";
    this.connection("connecting");
    this.item.show();
  }

  connection(state: ConnectionState) {
    const icon = state === "connected" ? "$(hubot)" : state === "closed" ? "$(error)" : "$(sync~spin)";
    this.item.text = `${icon} keel${state === "connected" ? "" : `: ${state}`}`;
    this.item.tooltip = `keel engine: ${state}`;
    if (state === "connected" && (this.status || this.share !== undefined)) this.render();
  }

  session(status: SessionStatus) {
    this.status = status;
    this.render();
  }

  /** The share of the context window the active session fills (`session/usage`, `session/get`). */
  context(share: number) {
    this.share = share;
    this.render();
  }

  private render() {
    const status = this.status;
    const icon = status === "running" ? "$(sync~spin)" : status === "waiting_approval" ? "$(bell-dot)" : "$(hubot)";
    const parts = [status?.replace("_", " "), this.share !== undefined ? `${percent(this.share)} context` : undefined];
    const shown = parts.filter(Boolean).join(" · ");
    this.item.text = `${icon} keel${shown ? `: ${shown}` : ""}`;
    this.item.tooltip =
      this.share !== undefined ? `keel: the session fills ${percent(this.share)} of its model's context window` : "keel";
  }

  dispose() {
    this.item.dispose();
  }
}
