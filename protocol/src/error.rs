//! JSON-RPC error codes: the standard ones and keel's own.

pub const PARSE_ERROR: i32 = -32700;
pub const INVALID_REQUEST: i32 = -32600;
pub const METHOD_NOT_FOUND: i32 = -32601;
pub const INVALID_PARAMS: i32 = -32602;
pub const INTERNAL_ERROR: i32 = -32603;
pub const NOT_INITIALIZED: i32 = -32002;
pub const REQUEST_CANCELLED: i32 = -32800;
pub const OVERLOADED: i32 = -32001;

pub const SESSION_NOT_FOUND: i32 = -32010;
pub const CONFLICT: i32 = -32011;
pub const APPROVAL_NOT_FOUND: i32 = -32012;
pub const PROVIDER_UNAVAILABLE: i32 = -32013;
pub const UNAUTHORIZED: i32 = -32014;
