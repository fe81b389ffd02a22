// Activation: start (or connect to) the engine for the workspace, register the chat panel, keep the status bar
// item current. The connection opens in the background so that activation never waits for the engine.
import * as vscode from "vscode";
import type { Approval, CancellationToken, KeelClient } from "../../sdk-ts/src/index";
import { askApproval } from "./approvals";
import { ChatView } from "./chatView";
import { DiffDocuments } from "./diff";
import { openEngine } from "./engine";
import { readSettings } from "./settings";
import { StatusBar } from "./statusBar";

let engine: Promise<KeelClient> | undefined;

export function activate(context: vscode.ExtensionContext) {
  const activatedAt = Date.now();
  const output = vscode.window.createOutputChannel("keel");
  const settings = readSettings();
  const workspace = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? process.cwd();
  const status = new StatusBar();
  const diffs = new DiffDocuments();

  const chat = new ChatView(context.extensionUri, () => engine!, workspace, settings.defaultModel, diffs, (c) =>
    status.context(c.share),
  );
  // The panel shows an approval when it is visible on the approval's session or on its parent (a subagent's).
  const panelShows = async (sessionId: string) => {
    if (!chat.visible || !chat.activeSession) return false;
    if (sessionId === chat.activeSession) return true;
    const client = await engine!;
    const { session } = await client.request("session/get", { sessionId }).catch(() => ({ session: undefined }));
    return session?.parentId === chat.activeSession;
  };
  const onApproval = (approval: Approval, token: CancellationToken) => askApproval(approval, token, panelShows);
  engine = openEngine(settings, workspace, onApproval);
  engine.then(
    (client) => {
      output.appendLine(`keel ready in ${Date.now() - activatedAt} ms (${client.serverInfo?.serverInfo.version})`);
      status.connection("connected");
      client.onStateChange((state) => status.connection(state));
      client.on("session/delta", (delta) => chat.post({ type: "delta", delta }));
      client.on("session/statusChanged", (s) => {
        // The status bar is about the session the panel shows (any session until it shows one).
        if (!chat.activeSession || s.sessionId === chat.activeSession) status.session(s.status);
        chat.post({ type: "status", status: s });
      });
      client.on("session/usage", (usage) => {
        chat.post({ type: "usage", usage });
        if (usage.sessionId === chat.activeSession) status.context(usage.context.share);
      });
    },
    (error) => {
      status.connection("closed");
      output.appendLine(`keel did not start: ${error}`);
      void vscode.window.showErrorMessage(`keel did not start: ${error}. Check the keel.binaryPath setting.`);
    },
  );

  context.subscriptions.push(
    output,
    status,
    vscode.workspace.registerTextDocumentContentProvider(DiffDocuments.scheme, diffs),
    vscode.window.registerWebviewViewProvider(ChatView.id, chat),
    vscode.commands.registerCommand("keel.focus", () => vscode.commands.executeCommand(`${ChatView.id}.focus`)),
    vscode.commands.registerCommand("keel.restartEngine", async () => {
      await (await engine?.catch(() => undefined))?.close();
      engine = openEngine(readSettings(), workspace, onApproval);
      await engine;
      void vscode.window.showInformationMessage("keel restarted; reopen the panel to follow the new engine.");
    }),
  );
}

export async function deactivate() {
  const client = await engine?.catch(() => undefined);
  await client?.close();
}
