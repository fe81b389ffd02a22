/** The engine answered a request with a JSON-RPC error. */
export class KeelError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = "KeelError";
  }
}

/** Error codes of the protocol (protocol/schema and the wire contract). */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  Internal: -32603,
  NotInitialized: -32002,
  Overloaded: -32001,
  RequestCancelled: -32800,
  SessionNotFound: -32010,
  Conflict: -32011,
  ApprovalNotFound: -32012,
  ProviderUnavailable: -32013,
  Unauthorized: -32014,
} as const;
