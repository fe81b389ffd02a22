// The Node entry point: vscode-jsonrpc's Node runtime, the client, and the Node connectors.
import "vscode-jsonrpc/node";

export * from "./generated/protocol";
export { KeelClient, KeelClientOptions, ConnectionState, ReconnectOptions } from "./client";
export { Follower, FollowOptions } from "./follow";
export { isEvent, TypedEvent } from "./events";
export { KeelError, ErrorCode } from "./errors";
export type { CancellationToken, Disposable } from "vscode-jsonrpc";
export { Connector, Transport, webSocketTransport } from "./transport";
export { WebSocketLike, WebSocketMessageReader, WebSocketMessageWriter } from "./websocket";
export { stdio, unixSocket, webSocket, SpawnOptions, WebSocketOptions } from "./node";
