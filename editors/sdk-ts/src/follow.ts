// Following one session from a cursor. The engine delivers each event after the cursor exactly once per
// subscription; this keeps that promise across subscriptions: after a disconnect, a lagged subscription or an
// engine restart, the follower subscribes again from the last seq it delivered and drops anything at or below it.
import type { Event, SyncedParams } from "./generated/protocol";

export interface FollowOptions {
  /** The last seq already seen: 0 replays the whole history, -1 starts from now. */
  afterSeq?: number;
  /** Each event, in seq order, exactly once. */
  onEvent: (event: Event) => void;
  /** The replay after each (re)subscription is complete; live events follow. */
  onSynced?: (params: SyncedParams) => void;
}

/** The subscribe call a follower needs from its client. */
export interface Subscriber {
  subscribe(follower: Follower): Promise<void>;
  unsubscribe(follower: Follower): Promise<void>;
}

export class Follower {
  /** The seq of the last event delivered; the cursor of the next subscription. */
  lastSeq: number;
  /** The engine's subscription this follower listens to now; events of earlier ones are ignored. */
  subscriptionId: string | undefined;
  private stopped = false;

  constructor(
    readonly sessionId: string,
    private readonly options: FollowOptions,
    private readonly subscriber: Subscriber,
  ) {
    this.lastSeq = options.afterSeq ?? 0;
  }

  get active(): boolean {
    return !this.stopped;
  }

  /** Called by the client with every `session/event`. */
  receive(subscriptionId: string, event: Event): void {
    if (this.stopped || subscriptionId !== this.subscriptionId || event.seq <= this.lastSeq) return;
    this.lastSeq = event.seq;
    this.options.onEvent(event);
  }

  synced(params: SyncedParams): void {
    if (this.stopped || params.subscriptionId !== this.subscriptionId) return;
    this.options.onSynced?.(params);
  }

  /** The cursor to subscribe from, and whether `-1` (from now) still applies. */
  cursor(): number {
    return this.lastSeq;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    await this.subscriber.unsubscribe(this);
    this.stopped = true;
  }
}
