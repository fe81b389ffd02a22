// The side panel's host half: serves the webview and carries its messages to the engine client and back.
import * as vscode from "vscode";
import type { ContextUsage, Follower, KeelClient, KeelRequests } from "../../sdk-ts/src/index";
import type { HostToPanel, PanelToHost } from "../webview/hostProtocol";
import type { DiffDocuments } from "./diff";

export class ChatView implements vscode.WebviewViewProvider {
  static readonly id = "keel.chat";
  private view: vscode.WebviewView | undefined;
  private readonly followers = new Map<number, Follower>();
  /** The session the panel shows: the one it said it shows, or last followed. */
  private active: string | undefined;

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly client: () => Promise<KeelClient>,
    private readonly workspace: string,
    private readonly defaultModel: string,
    private readonly diffs: DiffDocuments,
    /** The context usage of the session the panel shows, when it opens one (from its `session/get`). */
    private readonly onContext: (context: ContextUsage) => void = () => {},
  ) {}

  get activeSession(): string | undefined {
    return this.active;
  }

  get visible(): boolean {
    return this.view?.visible ?? false;
  }

  /** Engine notifications for the panel (deltas, status changes). */
  post(message: HostToPanel) {
    void this.view?.webview.postMessage(message);
  }

  resolveWebviewView(view: vscode.WebviewView) {
    this.view = view;
    const media = vscode.Uri.joinPath(this.extensionUri, "media");
    const dist = vscode.Uri.joinPath(this.extensionUri, "dist");
    view.webview.options = { enableScripts: true, localResourceRoots: [media, dist] };
    view.webview.html = this.html(view.webview);
    view.webview.onDidReceiveMessage((m: PanelToHost) => void this.handle(m));
    view.onDidDispose(() => {
      for (const f of this.followers.values()) void f.stop();
      this.followers.clear();
      this.view = undefined;
    });
  }

  private async handle(message: PanelToHost) {
    switch (message.type) {
      case "ready":
        this.post({ type: "config", workspace: this.workspace, defaultModel: this.defaultModel });
        break;
      case "request":
        try {
          const client = await this.client();
          const method = message.method as keyof KeelRequests;
          const result = await client.request(method, message.params as never);
          this.post({ type: "response", id: message.id, result });
        } catch (error) {
          const e = error as { code?: number; message?: string };
          this.post({ type: "response", id: message.id, error: { code: e.code ?? -32603, message: String(e.message ?? error) } });
        }
        break;
      case "follow":
        try {
          const client = await this.client();
          const followId = message.id;
          this.active = message.sessionId;
          const follower = await client.follow(message.sessionId, {
            afterSeq: message.afterSeq,
            onEvent: (event) => this.post({ type: "event", followId, event }),
          });
          this.followers.set(followId, follower);
          this.post({ type: "response", id: message.id, result: {} });
        } catch (error) {
          this.post({ type: "response", id: message.id, error: { code: -32603, message: String(error) } });
        }
        break;
      case "showing":
        this.active = message.sessionId;
        this.onContext(message.context);
        break;
      case "unfollow":
        void this.followers.get(message.followId)?.stop();
        this.followers.delete(message.followId);
        break;
      case "openDiff":
        await this.diffs.open(message.path, message.before, message.after);
        break;
    }
  }

  private html(webview: vscode.Webview): string {
    const nonce = Array.from({ length: 32 }, () => Math.floor(Math.random() * 36).toString(36)).join("");
    const script = webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, "dist", "webview.js"));
    const style = webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, "media", "panel.css"));
    return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src ${webview.cspSource}; img-src ${webview.cspSource} data:; script-src 'nonce-${nonce}';">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link href="${style}" rel="stylesheet">
<title>keel</title>
</head>
<body>
<div id="keel"></div>
<script nonce="${nonce}" src="${script}"></script>
</body>
</html>`;
  }
}
