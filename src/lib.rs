//! keel: a headless AI coding-agent engine driven over JSON-RPC. `ARCHITECTURE.md` is the map.

pub mod acp;
pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod mcp;
pub mod permission;
pub mod plugin;
pub mod provider;
pub mod rpc;
pub mod sandbox;
pub mod secret;
pub mod session;
pub mod store;
pub mod tool;

/// The protocol schema as committed under `protocol/schema/`, pretty-printed with a final newline.
pub fn schema_text() -> String {
    let schema = keel_protocol::schema::protocol_schema();
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// The config files' schema, as committed under `protocol/schema/`.
pub fn config_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&config::schema()).unwrap_or_default();
    text.push('\n');
    text
}
