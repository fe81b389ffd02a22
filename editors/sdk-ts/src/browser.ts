// The browser entry point (webviews, web panels): vscode-jsonrpc's browser runtime and a WebSocket connector.
import "vscode-jsonrpc/browser";
import { Connector, Transport, webSocketTransport } from "./transport";
import type { WebSocketLike } from "./websocket";

export * from "./generated/protocol";
export { KeelClient, KeelClientOptions, ConnectionState, ReconnectOptions } from "./client";
export { Follower, FollowOptions } from "./follow";
export { isEvent, TypedEvent } from "./events";
export { KeelError, ErrorCode } from "./errors";
export type { CancellationToken, Disposable } from "vscode-jsonrpc";
export { Connector, Transport, webSocketTransport } from "./transport";

/** Connects to `keel serve --listen ws://HOST:PORT`; a browser cannot set headers, so a token goes in the URL. */
export function browserWebSocket(url: string, token?: string): Connector {
  const target = token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url;
  return () =>
    new Promise<Transport>((resolve, reject) => {
      const socket = new WebSocket(target);
      socket.onerror = () => reject(new Error(`cannot connect to ${url}`));
      socket.onopen = () => resolve(webSocketTransport(socket as unknown as WebSocketLike));
    });
}
