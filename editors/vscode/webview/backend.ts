// What the panel needs from an engine. In VS Code the extension host holds the connection and the panel reaches it
// through postMessage (hostBackend.ts); the test page and browser panels hold a client of their own
// (directBackend.ts). The panel is the same code either way.
import type {
  ContextUsage,
  DeltaParams,
  Event,
  KeelRequests,
  SessionStatusChangedParams,
  SessionUsageParams,
} from "../../sdk-ts/src/generated/protocol";

export type Params<M extends keyof KeelRequests> = KeelRequests[M]["params"];
export type Result<M extends keyof KeelRequests> = KeelRequests[M]["result"];

export interface Backend {
  /** The directory new sessions work in. */
  readonly workspace: string;
  /** The model new prompts use unless the picker says otherwise ("" for the engine's default). */
  readonly defaultModel: string;
  request<M extends keyof KeelRequests>(method: M, params: Params<M>): Promise<Result<M>>;
  /** Follows a session after `afterSeq`, each event once, across reconnections; resolves to a stop function. */
  follow(sessionId: string, afterSeq: number, onEvent: (event: Event) => void): Promise<() => void>;
  onDelta(handler: (delta: DeltaParams) => void): void;
  onStatus(handler: (status: SessionStatusChangedParams) => void): void;
  /** `session/usage`: a session's context size and totals, after each turn and compaction. */
  onUsage(handler: (usage: SessionUsageParams) => void): void;
  /** Tells the editor which session the panel shows and how full its context is (the status bar shows it). */
  showing?(sessionId: string, context: ContextUsage): void;
  /** Opens an edit in the editor's diff view, where there is one. */
  openDiff?(path: string, before: string, after: string): void;
}

/** Where the panel keeps what it has rendered, so that a reload resumes from its cursor. */
export interface StateStore {
  load(): PanelState | undefined;
  save(state: PanelState): void;
}

export interface PanelState {
  sessionId?: string;
  model?: string;
  agent?: string;
  /** The followed session's events up to `lastSeq`, re-rendered after a reload instead of replayed. */
  events: Event[];
  lastSeq: number;
}
