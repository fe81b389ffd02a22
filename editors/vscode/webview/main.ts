// The panel inside VS Code: the engine is reached through the extension host; state survives reloads in the
// webview's own state.
import type { Backend, PanelState, Params, Result } from "./backend";
import type { HostToPanel, PanelToHost } from "./hostProtocol";
import type { DeltaParams, Event, KeelRequests, SessionStatusChangedParams, SessionUsageParams } from "../../sdk-ts/src/generated/protocol";
import { Panel } from "./panel";

declare function acquireVsCodeApi(): {
  postMessage(message: PanelToHost): void;
  getState(): PanelState | undefined;
  setState(state: PanelState): void;
};

const vscode = acquireVsCodeApi();
let nextId = 0;
const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
const followers = new Map<number, (event: Event) => void>();
const deltaHandlers: ((d: DeltaParams) => void)[] = [];
const statusHandlers: ((s: SessionStatusChangedParams) => void)[] = [];
const usageHandlers: ((u: SessionUsageParams) => void)[] = [];

function call(message: PanelToHost & { id: number }): Promise<unknown> {
  return new Promise((resolve, reject) => {
    pending.set(message.id, { resolve, reject });
    vscode.postMessage(message);
  });
}

window.addEventListener("message", (e: MessageEvent<HostToPanel>) => {
  const message = e.data;
  switch (message.type) {
    case "config":
      void start(message.workspace, message.defaultModel);
      break;
    case "response": {
      const waiter = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) waiter?.reject(new Error(message.error.message));
      else waiter?.resolve(message.result);
      break;
    }
    case "event":
      followers.get(message.followId)?.(message.event);
      break;
    case "delta":
      deltaHandlers.forEach((h) => h(message.delta));
      break;
    case "status":
      statusHandlers.forEach((h) => h(message.status));
      break;
    case "usage":
      usageHandlers.forEach((h) => h(message.usage));
      break;
  }
});

let started = false;
async function start(workspace: string, defaultModel: string) {
  if (started) return;
  started = true;
  const backend: Backend = {
    workspace,
    defaultModel,
    request: <M extends keyof KeelRequests>(method: M, params: Params<M>) =>
      call({ type: "request", id: ++nextId, method, params }) as Promise<Result<M>>,
    async follow(sessionId, afterSeq, onEvent) {
      const id = ++nextId;
      followers.set(id, onEvent);
      await call({ type: "follow", id, sessionId, afterSeq });
      return () => {
        followers.delete(id);
        vscode.postMessage({ type: "unfollow", followId: id });
      };
    },
    onDelta: (h) => void deltaHandlers.push(h),
    onStatus: (h) => void statusHandlers.push(h),
    onUsage: (h) => void usageHandlers.push(h),
    showing: (sessionId, context) => vscode.postMessage({ type: "showing", sessionId, context }),
    openDiff: (path, before, after) => vscode.postMessage({ type: "openDiff", path, before, after }),
  };
  const store = { load: () => vscode.getState(), save: (s: PanelState) => vscode.setState(s) };
  await new Panel(document.getElementById("keel")!, backend, store).start();
}

vscode.postMessage({ type: "ready" });
