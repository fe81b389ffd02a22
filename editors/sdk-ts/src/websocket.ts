// JSON-RPC over a WebSocket: one message per text frame, as `keel serve --listen ws://` speaks it. Works with the
// browser's WebSocket and with the `ws` package, which both offer the `on*` properties used here.
import { AbstractMessageReader, AbstractMessageWriter, DataCallback, Disposable, Message } from "vscode-jsonrpc";

/** What both the browser's WebSocket and `ws` provide. */
export interface WebSocketLike {
  send(data: string): void;
  close(): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: unknown) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

function frameText(data: unknown): string {
  if (typeof data === "string") return data;
  // `ws` hands over Buffers (a Node Uint8Array); a browser with binaryType "arraybuffer" hands over ArrayBuffers.
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  return String(data);
}

export class WebSocketMessageReader extends AbstractMessageReader {
  constructor(private readonly socket: WebSocketLike) {
    super();
    socket.onclose = () => this.fireClose();
    socket.onerror = (event) => this.fireError(event);
  }

  listen(callback: DataCallback): Disposable {
    this.socket.onmessage = (event) => {
      try {
        callback(JSON.parse(frameText(event.data)) as Message);
      } catch (error) {
        this.fireError(error);
      }
    };
    return Disposable.create(() => {
      this.socket.onmessage = null;
    });
  }
}

export class WebSocketMessageWriter extends AbstractMessageWriter {
  constructor(private readonly socket: WebSocketLike) {
    super();
  }

  async write(message: Message): Promise<void> {
    try {
      this.socket.send(JSON.stringify(message));
    } catch (error) {
      this.fireError([error, message, 0]);
      throw error;
    }
  }

  end(): void {
    this.socket.close();
  }
}
