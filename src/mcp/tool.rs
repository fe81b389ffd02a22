//! An MCP server's tool as a keel `Tool`: named `server_tool`, checked as action `mcp` on `server/tool`, called
//! through whatever connection the server has when the call starts (a restarted server serves the same tools).

use std::sync::{Arc, Weak};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotification, CancelledNotificationParam,
    ClientRequest, RawContent, ResourceContents, ServerResult,
};
use rmcp::service::{Peer, PeerRequestOptions, RoleClient, ServiceError};
use serde_json::Value;

use super::server::{Server, Status};
use crate::permission::Access;
use crate::provider::BoxFuture;
use crate::tool::{Decoded, Tool, ToolContext, ToolError, ToolOutput};

/// The permission action of every MCP tool; its resource is `server/tool`.
pub const ACTION: &str = "mcp";

/// Providers accept `^[a-zA-Z0-9_-]{1,64}$` (OpenAI, Anthropic); longer names are cut and keep a hash of the whole.
const MAX_NAME: usize = 64;

pub struct McpTool {
    name: String,
    server_name: String,
    /// The tool's name on its server.
    remote: String,
    description: String,
    schema: Value,
    server: Weak<Server>,
}

impl McpTool {
    pub fn from_listing(server: &Arc<Server>, tools: Vec<rmcp::model::Tool>) -> Vec<Arc<Self>> {
        let mut seen = std::collections::BTreeSet::new();
        tools
            .into_iter()
            .filter_map(|t| {
                let name = tool_name(&server.spec.name, &t.name);
                if !seen.insert(name.clone()) {
                    tracing::warn!(server = %server.spec.name, "two tools are both named {name}; the second is left out");
                    return None;
                }
                let mut schema = Value::Object((*t.input_schema).clone());
                if let Some(obj) = schema.as_object_mut() {
                    obj.remove("$schema");
                    obj.entry("type").or_insert_with(|| Value::String("object".into()));
                }
                let description = t.description.map(|d| d.into_owned()).or(t.title).unwrap_or_else(|| t.name.to_string());
                Some(Arc::new(Self {
                    name,
                    server_name: server.spec.name.clone(),
                    remote: t.name.into_owned(),
                    description,
                    schema,
                    server: Arc::downgrade(server),
                }))
            })
            .collect()
    }

    pub fn remote_name(&self) -> &str {
        &self.remote
    }

    async fn call(&self, input: Value, ctx: ToolContext) -> Result<ToolOutput, ToolError> {
        let server = self.server.upgrade().ok_or_else(|| self.failed("the server was removed"))?;
        let arguments = match input {
            Value::Object(map) => Some(map),
            Value::Null => None,
            _ => {
                return Err(ToolError::InvalidInput { tool: self.name.clone(), message: "expected an object".into() });
            }
        };
        let peer = tokio::select! {
            peer = ready_peer(&server) => peer.map_err(|e| self.failed(&e))?,
            () = ctx.cancel.cancelled() => return Err(ToolError::Interrupted),
        };
        let request = ClientRequest::CallToolRequest(CallToolRequest {
            method: Default::default(),
            params: CallToolRequestParams { meta: None, name: self.remote.clone().into(), arguments, task: None },
            extensions: Default::default(),
        });
        let options = PeerRequestOptions { timeout: Some(server.spec.call_timeout), meta: None };
        let handle = peer.send_request_with_option(request, options).await.map_err(|e| self.failed(&e.to_string()))?;
        let id = handle.id.clone();
        tokio::select! {
            answer = handle.await_response() => match answer {
                Ok(ServerResult::CallToolResult(result)) => output(result).map_err(ToolError::Failed),
                Ok(_) => Err(self.failed("the server answered with something else than a tool result")),
                Err(ServiceError::Timeout { timeout }) => {
                    Err(self.failed(&format!("no answer within {} ms", timeout.as_millis())))
                }
                Err(e) => Err(self.failed(&e.to_string())),
            },
            () = ctx.cancel.cancelled() => {
                // The server may stop its work; keel does not wait for it to.
                let cancelled = CancelledNotification {
                    params: CancelledNotificationParam { request_id: id, reason: Some("interrupted".into()) },
                    method: Default::default(),
                    extensions: Default::default(),
                };
                let _ = peer.send_notification(cancelled.into()).await;
                Err(ToolError::Interrupted)
            }
        }
    }

    fn failed(&self, why: &str) -> ToolError {
        ToolError::Failed(format!("MCP server {}: {why}", self.server_name))
    }
}

/// The server's connection once it is ready; waits through a restart, at most its start-up time.
async fn ready_peer(server: &Server) -> Result<Peer<RoleClient>, String> {
    let mut state = server.subscribe();
    let wait = async {
        loop {
            {
                let now = state.borrow_and_update();
                match (&now.status, &now.peer) {
                    (Status::Ready, Some(peer)) => return Ok(peer.clone()),
                    (Status::Failed { reason, retrying: false }, _) => return Err(format!("failed: {reason}")),
                    (Status::Stopped, _) => return Err("stopped".to_owned()),
                    _ => {}
                }
            }
            if state.changed().await.is_err() {
                return Err("stopped".to_owned());
            }
        }
    };
    match tokio::time::timeout(server.spec.startup_timeout, wait).await {
        Ok(ready) => ready,
        Err(_) => Err(format!("not ready ({})", status_word(&server.snapshot().status))),
    }
}

fn status_word(status: &Status) -> String {
    match status {
        Status::Starting => "starting".into(),
        Status::Ready => "ready".into(),
        Status::Failed { reason, .. } => format!("failed: {reason}"),
        Status::Stopped => "stopped".into(),
    }
}

/// A tool result as text for the model: text blocks as they are, other content named, structured content as JSON
/// when there is nothing else. A result the server marks as an error is the call's error.
fn output(result: CallToolResult) -> Result<ToolOutput, String> {
    let mut parts: Vec<String> = result
        .content
        .into_iter()
        .map(|c| match c.raw {
            RawContent::Text(t) => t.text,
            RawContent::Image(i) => format!("[image {}, {} bytes of base64]", i.mime_type, i.data.len()),
            RawContent::Audio(a) => format!("[audio {}, {} bytes of base64]", a.mime_type, a.data.len()),
            RawContent::Resource(r) => match r.resource {
                ResourceContents::TextResourceContents { text, .. } => text,
                ResourceContents::BlobResourceContents { uri, .. } => format!("[resource {uri}]"),
            },
            RawContent::ResourceLink(l) => format!("[resource {} ({})]", l.uri, l.name),
        })
        .collect();
    if parts.is_empty()
        && let Some(structured) = result.structured_content
    {
        parts.push(structured.to_string());
    }
    let text = parts.join("\n");
    if result.is_error == Some(true) { Err(text) } else { Ok(ToolOutput { output: text, truncated: false }) }
}

/// `server_tool` in the characters providers accept.
pub fn tool_name(server: &str, tool: &str) -> String {
    let full: String = format!("{server}_{tool}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    if full.len() <= MAX_NAME {
        return full;
    }
    // FNV-1a: stable across runs and builds, so a long name stays the same name in a session's history.
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{}_{:08x}", &full[..MAX_NAME - 9], hash as u32)
}

impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn input_schema(&self) -> Value {
        self.schema.clone()
    }

    fn pages_itself(&self) -> bool {
        false
    }

    /// A server's `readOnlyHint` is the server's word, not keel's knowledge: recovery never sends a turn again on it.
    fn idempotent(&self) -> bool {
        false
    }

    fn decode(&self, input: Value) -> Decoded {
        Decoded::new(input)
    }

    fn access(&self, _: &Decoded, _: &ToolContext) -> Result<Vec<Access>, ToolError> {
        Ok(vec![Access { action: ACTION, resources: vec![format!("{}/{}", self.server_name, self.remote)] }])
    }

    fn start<'a>(&'a self, input: Decoded, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        let input = input.take::<Value>().unwrap_or_default();
        Box::pin(self.call(input, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_providers() {
        assert_eq!(tool_name("fs", "read_file"), "fs_read_file");
        assert_eq!(tool_name("my server", "a.b/c"), "my_server_a_b_c");
        let long = tool_name("s", &"x".repeat(100));
        assert_eq!(long.len(), MAX_NAME);
        assert_ne!(long, tool_name("s", &"x".repeat(101)));
    }
}
