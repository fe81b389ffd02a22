// A backend that is its own client: a browser page on `keel serve --listen ws://`.
import { KeelClient, browserWebSocket } from "../../sdk-ts/src/browser";
import type { Backend, Params, Result } from "./backend";
import type { DeltaParams, KeelRequests, SessionStatusChangedParams, SessionUsageParams } from "../../sdk-ts/src/generated/protocol";

export async function directBackend(url: string, workspace: string, token?: string): Promise<Backend> {
  const client = await KeelClient.open({
    connect: browserWebSocket(url, token),
    clientInfo: { name: "keel-panel" },
    deltas: true,
    reconnect: { initialDelayMs: 100, maxDelayMs: 2000 },
  });
  return {
    workspace,
    defaultModel: "",
    request: <M extends keyof KeelRequests>(method: M, params: Params<M>): Promise<Result<M>> =>
      client.request(method, params),
    async follow(sessionId, afterSeq, onEvent) {
      const follower = await client.follow(sessionId, { afterSeq, onEvent });
      return () => void follower.stop();
    },
    onDelta: (handler: (d: DeltaParams) => void) => void client.on("session/delta", handler),
    onStatus: (handler: (s: SessionStatusChangedParams) => void) => void client.on("session/statusChanged", handler),
    onUsage: (handler: (u: SessionUsageParams) => void) => void client.on("session/usage", handler),
  };
}
