// A stand-in for the `vscode` module, with just the API the extension uses, so that its real bundle can be
// activated in Node: by test/activation.test.mjs and by the activation-to-ready benchmark.
import Module, { createRequire } from "node:module";
import { join } from "node:path";

/** Loads dist/extension.js with `require("vscode")` answered by a fresh stand-in; returns both. */
export function loadExtension(root, { workspace, settings }) {
  // `notificationAnswer`: what the user picks in the next notifications (undefined: dismissed).
  const recorded = { output: [], executed: [], notifications: [], notificationAnswer: undefined, views: {}, commands: {}, providers: {} };
  const statusItem = { text: "", tooltip: "", command: "", show() {}, dispose() {} };
  const disposable = { dispose() {} };
  const uri = (fsPath) => ({ fsPath, toString: () => fsPath });
  const vscode = {
    StatusBarAlignment: { Left: 1, Right: 2 },
    Uri: { joinPath: (base, ...parts) => uri([base.fsPath, ...parts].join("/")), from: (parts) => parts },
    window: {
      createOutputChannel: () => ({ appendLine: (line) => recorded.output.push(line), dispose() {} }),
      createStatusBarItem: () => statusItem,
      registerWebviewViewProvider: (id, provider) => ((recorded.views[id] = provider), disposable),
      showErrorMessage: async (message) => recorded.output.push(`error: ${message}`),
      showInformationMessage: async (message, ...items) => (recorded.notifications.push({ message, items }), recorded.notificationAnswer),
    },
    workspace: {
      getConfiguration: () => ({ get: (key) => settings[key] }),
      workspaceFolders: [{ uri: uri(workspace) }],
      registerTextDocumentContentProvider: (scheme, provider) => ((recorded.providers[scheme] = provider), disposable),
    },
    commands: {
      registerCommand: (id, run) => ((recorded.commands[id] = run), disposable),
      executeCommand: async (...args) => recorded.executed.push(args),
    },
  };
  const bundle = join(root, "dist/extension.js");
  const require = createRequire(import.meta.url);
  delete require.cache[require.resolve(bundle)];
  const load = Module._load;
  Module._load = function (request, ...rest) {
    return request === "vscode" ? vscode : load.call(this, request, ...rest);
  };
  try {
    const extension = require(bundle);
    return { extension, recorded, statusItem, context: { subscriptions: [], extensionUri: uri(root) } };
  } finally {
    Module._load = load;
  }
}
