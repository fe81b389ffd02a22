//! A plugin's provider as a keel `Provider`: a turn is a `provider/stream` request to the plugin, whose pieces come
//! back as `provider/delta` requests from the plugin, routed to the turn's sink by their request id.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use keel_protocol::Method;
use keel_protocol::plugin::{
    ProviderDelta, ProviderMessage, ProviderStream, ProviderStreamParams, ProviderStreamResult, ProviderToolCall,
    ToolDeclaration, UserContent,
};
use parking_lot::Mutex;

use super::process::Plugin;
use crate::provider::{
    BoxFuture, ChatMessage, EventSink, Provider, ProviderError, Request, StreamEvent, TokenUsage, ToolCall, UserPart,
};
use crate::rpc::PeerError;

/// A turn may stream this long; the runner's own interrupt and idle limits stop it sooner.
const TURN_TIMEOUT: Duration = Duration::from_secs(600);

/// The sinks of the turns out with plugins, by request id, with the connection that may feed each.
#[derive(Default)]
pub struct Streams(Mutex<HashMap<String, (u64, EventSink)>>);

impl Streams {
    /// Feeds a turn; false when no turn of that id is out on connection `peer_id`.
    pub fn deliver(&self, peer_id: u64, request_id: &str, deltas: Vec<ProviderDelta>) -> bool {
        let streams = self.0.lock();
        let Some((_, sink)) = streams.get(request_id).filter(|(owner, _)| *owner == peer_id) else {
            return false;
        };
        for delta in deltas {
            let event = match delta {
                ProviderDelta::Text { text } => StreamEvent::TextDelta(text),
                ProviderDelta::Reasoning { text } => StreamEvent::ReasoningDelta(text),
                ProviderDelta::ToolCall(c) => {
                    StreamEvent::ToolCall(ToolCall { id: c.id, name: c.name, input: c.input })
                }
            };
            let _ = sink.send(event);
        }
        true
    }
}

pub struct PluginProvider {
    pub plugin: Weak<Plugin>,
    pub streams: Weak<Streams>,
}

impl Provider for PluginProvider {
    fn stream<'a>(&'a self, request: &'a Request, sink: EventSink) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let gone = || ProviderError::Interrupted("the plugin serving this provider is not running".into());
            let plugin = self.plugin.upgrade().ok_or_else(gone)?;
            let streams = self.streams.upgrade().ok_or_else(gone)?;
            let peer = plugin.connection().ok_or_else(gone)?;
            let request_id = format!("prq_{}", uuid::Uuid::now_v7().simple());
            streams.0.lock().insert(request_id.clone(), (peer.id(), sink.clone()));
            let params = params(request, request_id.clone());
            let answer = peer.request(ProviderStream::NAME, &params, TURN_TIMEOUT).await;
            streams.0.lock().remove(&request_id);
            let name = &plugin.spec.name;
            let answer = answer.map_err(|e| match e {
                PeerError::Timeout(_) => ProviderError::TimedOut(format!("plugin {name} did not finish the turn")),
                PeerError::Remote { message, .. } => ProviderError::Server {
                    status: 502,
                    message: format!("plugin {name}: {message}"),
                    retry_after: None,
                },
                other => ProviderError::Interrupted(format!("plugin {name}: {other}")),
            })?;
            let result: ProviderStreamResult = serde_json::from_value(answer)
                .map_err(|e| ProviderError::Malformed(format!("plugin {name} answered provider/stream badly: {e}")))?;
            if let Some(usage) = result.usage {
                let _ = sink.send(StreamEvent::Usage(TokenUsage {
                    input: usage.input,
                    output: usage.output,
                    ..TokenUsage::default()
                }));
            }
            let _ = sink.send(StreamEvent::Finish(result.finish_reason));
            Ok(())
        })
    }
}

fn params(request: &Request, request_id: String) -> ProviderStreamParams {
    let messages = request
        .messages
        .iter()
        .map(|m| match m {
            ChatMessage::User(parts) => ProviderMessage::User {
                content: parts
                    .iter()
                    .map(|p| match p {
                        UserPart::Text(text) => UserContent::Text { text: text.clone() },
                        UserPart::Image { mime, data_base64 } => {
                            UserContent::Image { mime: mime.clone(), data: data_base64.clone() }
                        }
                    })
                    .collect(),
            },
            ChatMessage::Assistant { text, tool_calls, .. } => ProviderMessage::Assistant {
                text: text.clone(),
                tool_calls: tool_calls
                    .iter()
                    .map(|c| ProviderToolCall { id: c.id.clone(), name: c.name.clone(), input: c.input.clone() })
                    .collect(),
            },
            ChatMessage::ToolResult { call_id, tool, output, is_error } => ProviderMessage::Tool {
                call_id: call_id.clone(),
                tool: tool.clone(),
                output: output.clone(),
                is_error: *is_error,
            },
        })
        .collect();
    ProviderStreamParams {
        request_id,
        model: request.model.clone(),
        system: request.system.clone(),
        messages,
        tools: request
            .tools
            .iter()
            .map(|t| ToolDeclaration {
                name: t.name.clone(),
                description: t.description.clone(),
                input_schema: t.input_schema.clone(),
            })
            .collect(),
        max_output_tokens: request.max_output_tokens,
        temperature: request.temperature,
        reasoning_effort: request.reasoning_effort,
    }
}
