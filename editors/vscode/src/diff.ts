import * as vscode from "vscode";

/** Before/after texts of proposed edits, served to VS Code's diff editor under the `keel-diff` scheme. */
export class DiffDocuments implements vscode.TextDocumentContentProvider {
  static readonly scheme = "keel-diff";
  private readonly texts = new Map<string, string>();
  private next = 0;

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.texts.get(uri.query) ?? "";
  }

  async open(path: string, before: string, after: string) {
    const id = ++this.next;
    const name = path.split("/").pop() ?? path;
    this.texts.set(`${id}-before`, before);
    this.texts.set(`${id}-after`, after);
    const uri = (side: string) => vscode.Uri.from({ scheme: DiffDocuments.scheme, path: `/${name}`, query: `${id}-${side}` });
    await vscode.commands.executeCommand("vscode.diff", uri("before"), uri("after"), `${name} (keel edit)`);
  }
}
