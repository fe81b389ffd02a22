// Messages between the panel (webview) and the extension host, which holds the engine connection.

import type { ContextUsage, DeltaParams, Event, SessionStatusChangedParams, SessionUsageParams } from "../../sdk-ts/src/generated/protocol";

export type PanelToHost =
  | { type: "ready" }
  | { type: "request"; id: number; method: string; params: unknown }
  | { type: "follow"; id: number; sessionId: string; afterSeq: number }
  | { type: "unfollow"; followId: number }
  | { type: "showing"; sessionId: string; context: ContextUsage }
  | { type: "openDiff"; path: string; before: string; after: string };

export type HostToPanel =
  | { type: "config"; workspace: string; defaultModel: string }
  | { type: "response"; id: number; result?: unknown; error?: { code: number; message: string } }
  | { type: "event"; followId: number; event: Event }
  | { type: "delta"; delta: DeltaParams }
  | { type: "status"; status: SessionStatusChangedParams }
  | { type: "usage"; usage: SessionUsageParams };
