import type { MessageReader, MessageWriter } from "vscode-jsonrpc";
import { WebSocketLike, WebSocketMessageReader, WebSocketMessageWriter } from "./websocket";

/** One open connection to an engine. */
export interface Transport {
  reader: MessageReader;
  writer: MessageWriter;
  /** Closes the connection (and, for a spawned engine, lets it exit). */
  dispose(): void;
}

/** Opens a fresh connection; a client calls it again for each reconnection. */
export type Connector = () => Promise<Transport>;

/** Wraps an open WebSocket (the browser's or `ws`'s) as a transport. */
export function webSocketTransport(socket: WebSocketLike): Transport {
  return {
    reader: new WebSocketMessageReader(socket),
    writer: new WebSocketMessageWriter(socket),
    dispose: () => socket.close(),
  };
}
