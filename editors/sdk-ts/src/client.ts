// The client: typed requests and notifications over one engine connection, approvals answered by a handler, and
// followers that survive the connection. When the connection drops (the engine was killed, restarted, or the
// socket closed) the client connects again with backoff, initializes, and resubscribes every follower from its
// last delivered seq.
import {
  CancellationToken,
  Disposable,
  Emitter,
  Event as Signal,
  MessageConnection,
  ResponseError,
  createMessageConnection,
} from "vscode-jsonrpc";
import { KeelError } from "./errors";
import { Follower, FollowOptions, Subscriber } from "./follow";
import type {
  Approval,
  ApprovalAnswer,
  ClientCapabilities,
  EventNotificationParams,
  InitializeResult,
  KeelRequests,
  KeelServerNotifications,
  SubscriptionEndedParams,
  SyncedParams,
} from "./generated/protocol";
import { PROTOCOL_VERSION } from "./generated/protocol";
import type { Connector, Transport } from "./transport";

export interface ReconnectOptions {
  /** The first wait before connecting again, doubled per failed attempt up to `maxDelayMs`. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Give up (state `closed`) after this many failed attempts in a row; unlimited by default. */
  maxAttempts?: number;
}

export interface KeelClientOptions {
  /** Opens a fresh transport; called again for every reconnection. */
  connect: Connector;
  clientInfo?: { name: string; version?: string };
  /** Ask for `session/delta` notifications (streamed fragments, not durable). */
  deltas?: boolean;
  /** For listeners beyond loopback (TCP); WebSocket sends its token in the upgrade instead. */
  authToken?: string;
  /** Answers `approval/request`; without it the client does not declare `capabilities.approvals`. */
  onApproval?: (approval: Approval, token: CancellationToken) => Promise<ApprovalAnswer> | ApprovalAnswer;
  /** `false` turns reconnection off: a dropped connection closes the client. */
  reconnect?: ReconnectOptions | false;
}

export type ConnectionState = "connecting" | "connected" | "disconnected" | "closed";

type Params<M extends keyof KeelRequests> = KeelRequests[M]["params"];
type Result<M extends keyof KeelRequests> = KeelRequests[M]["result"];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class KeelClient implements Subscriber {
  private connection: MessageConnection | undefined;
  private transport: Transport | undefined;
  private ready: Promise<void>;
  private markReady: () => void = () => {};
  private closing = false;
  private readonly followers = new Set<Follower>();
  private readonly stateEmitter = new Emitter<ConnectionState>();
  private readonly notificationEmitter = new Emitter<{ method: string; params: unknown }>();
  private stateValue: ConnectionState = "connecting";
  /** The engine's answer to the latest `initialize`. */
  serverInfo: InitializeResult | undefined;

  private constructor(private readonly options: KeelClientOptions) {
    this.ready = this.newReadyGate();
  }

  /** Connects and initializes; rejects if the first connection fails. */
  static async open(options: KeelClientOptions): Promise<KeelClient> {
    const client = new KeelClient(options);
    await client.connectOnce();
    return client;
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  get onStateChange(): Signal<ConnectionState> {
    return this.stateEmitter.event;
  }

  /** A typed request. Requests made while disconnected wait for the next connection. */
  async request<M extends keyof KeelRequests>(method: M, params: Params<M>): Promise<Result<M>> {
    await this.ready;
    const connection = this.connection;
    if (!connection) throw new KeelError(-32603, "the client is closed");
    try {
      return (await connection.sendRequest(method, params)) as Result<M>;
    } catch (error) {
      if (error instanceof ResponseError) throw new KeelError(error.code, error.message, error.data);
      throw error;
    }
  }

  /** A typed engine notification (`session/delta`, `session/statusChanged`, `mcp/statusChanged`…). */
  on<N extends keyof KeelServerNotifications>(
    method: N,
    handler: (params: KeelServerNotifications[N]) => void,
  ): Disposable {
    return this.notificationEmitter.event((n) => {
      if (n.method === method) handler(n.params as KeelServerNotifications[N]);
    });
  }

  /** Follows a session's events from a cursor, across reconnections, each event delivered once. */
  async follow(sessionId: string, options: FollowOptions): Promise<Follower> {
    const follower = new Follower(sessionId, options, this);
    this.followers.add(follower);
    await this.subscribe(follower);
    return follower;
  }

  /** Part of `Subscriber`: (re)subscribes from the follower's cursor. */
  async subscribe(follower: Follower): Promise<void> {
    const result = await this.request("session/subscribe", { sessionId: follower.sessionId, afterSeq: follower.cursor() });
    // Notifications of this subscription are handled only after this continuation runs (vscode-jsonrpc handles
    // one message per macrotask), so none is missed for want of the id.
    follower.subscriptionId = result.subscriptionId;
    if (follower.lastSeq < 0) follower.lastSeq = result.headSeq;
  }

  async unsubscribe(follower: Follower): Promise<void> {
    this.followers.delete(follower);
    const subscriptionId = follower.subscriptionId;
    follower.subscriptionId = undefined;
    if (subscriptionId && this.stateValue === "connected") {
      await this.request("session/unsubscribe", { subscriptionId }).catch(() => undefined);
    }
  }

  /** Ends the connection for good: `shutdown`, `exit`, and the transport closed. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const connection = this.connection;
    if (connection && this.stateValue === "connected") {
      await Promise.race([connection.sendRequest("shutdown", null).catch(() => undefined), sleep(2000)]);
      await connection.sendNotification("exit").catch(() => undefined);
    }
    this.teardown();
    this.setState("closed");
    this.markReady();
  }

  private newReadyGate(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.markReady = resolve;
    });
  }

  private setState(state: ConnectionState) {
    if (this.stateValue === state) return;
    this.stateValue = state;
    this.stateEmitter.fire(state);
  }

  private async connectOnce(): Promise<void> {
    this.setState("connecting");
    const transport = await this.options.connect();
    const connection = createMessageConnection(transport.reader, transport.writer);
    this.transport = transport;
    this.connection = connection;
    connection.onNotification("session/event", (p: EventNotificationParams) => {
      for (const f of this.followers) f.receive(p.subscriptionId, p.event);
    });
    connection.onNotification("session/synced", (p: SyncedParams) => {
      for (const f of this.followers) f.synced(p);
    });
    connection.onNotification("session/subscriptionEnded", (p: SubscriptionEndedParams) => {
      // Lagged: catch up from the last delivered seq on a new subscription.
      for (const f of this.followers) {
        if (f.subscriptionId === p.subscriptionId) void this.subscribe(f).catch(() => undefined);
      }
    });
    connection.onNotification((method: string, params: unknown) => this.notificationEmitter.fire({ method, params }));
    const onApproval = this.options.onApproval;
    if (onApproval) {
      connection.onRequest("approval/request", (p: Approval, token: CancellationToken) => onApproval(p, token));
    }
    connection.onClose(() => this.lost(connection));
    connection.onError(() => undefined);
    connection.listen();
    const capabilities: ClientCapabilities = { approvals: !!onApproval, deltas: !!this.options.deltas };
    try {
      this.serverInfo = (await connection.sendRequest("initialize", {
        protocolVersion: PROTOCOL_VERSION,
        clientInfo: this.options.clientInfo ?? { name: "keel-sdk-ts" },
        capabilities,
        authToken: this.options.authToken,
      })) as InitializeResult;
      await connection.sendNotification("initialized", {});
    } catch (error) {
      this.teardown();
      throw error instanceof ResponseError ? new KeelError(error.code, error.message, error.data) : error;
    }
    this.setState("connected");
    this.markReady();
    for (const follower of this.followers) await this.subscribe(follower);
  }

  private teardown() {
    this.connection?.dispose();
    this.connection = undefined;
    this.transport?.dispose();
    this.transport = undefined;
  }

  private lost(connection: MessageConnection) {
    if (this.closing || connection !== this.connection) return;
    this.teardown();
    for (const f of this.followers) f.subscriptionId = undefined;
    if (this.options.reconnect === false) {
      this.setState("closed");
      this.markReady();
      return;
    }
    this.ready = this.newReadyGate();
    this.setState("disconnected");
    void this.reconnect(this.options.reconnect ?? {});
  }

  private async reconnect(options: ReconnectOptions) {
    let delay = options.initialDelayMs ?? 100;
    for (let attempt = 1; !this.closing; attempt++) {
      await sleep(delay);
      if (this.closing) return;
      try {
        await this.connectOnce();
        return;
      } catch {
        if (options.maxAttempts !== undefined && attempt >= options.maxAttempts) break;
        delay = Math.min(delay * 2, options.maxDelayMs ?? 5000);
      }
    }
    this.closing = true;
    this.setState("closed");
    this.markReady();
  }
}
