//! Anthropic Messages: content blocks streamed as `content_block_*` events between `message_start` and
//! `message_stop`.

use std::collections::HashMap;

use keel_protocol::session::ReasoningEffort;
use serde_json::{Value, json};

use super::http::{self, Flow, KeyHeader, Upstream};
use super::openai_chat::parse_arguments;
use super::{
    BoxFuture, ChatMessage, EventSink, Provider, ProviderError, Request, StreamEvent, TokenUsage, ToolCall, UserPart,
};

const API_VERSION: &str = "2023-06-01";
/// Anthropic requires a limit; used when the model database has none.
const DEFAULT_MAX_TOKENS: u64 = 8192;

pub struct Anthropic {
    pub upstream: Upstream,
}

impl Provider for Anthropic {
    fn stream<'a>(&'a self, request: &'a Request, sink: EventSink) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let mut extra = request.extra_headers();
            extra.push(("anthropic-version", API_VERSION));
            let endpoint = self.upstream.endpoint("messages", KeyHeader::XApiKey, &extra);
            let mut state = State::default();
            let done = http::stream_sse(endpoint, &self.upstream.shape(request_body(request)), |event| {
                state.on_event(&event, &sink)
            })
            .await?;
            if !done {
                return Err(ProviderError::Interrupted("no message_stop".into()));
            }
            Ok(())
        })
    }
}

pub fn request_body(request: &Request) -> Value {
    let mut messages: Vec<Value> = Vec::new();
    let mut push = |role: &str, blocks: Vec<Value>| {
        if blocks.is_empty() {
            return;
        }
        match messages.last_mut() {
            // Consecutive turns of one role merge: tool results of several calls go back in one user message.
            Some(last) if last["role"] == role => {
                if let Some(content) = last["content"].as_array_mut() {
                    content.extend(blocks);
                }
            }
            _ => messages.push(json!({ "role": role, "content": blocks })),
        }
    };
    for message in &request.messages {
        match message {
            ChatMessage::User(parts) => push(
                "user",
                parts
                    .iter()
                    .map(|p| match p {
                        UserPart::Text(text) => json!({ "type": "text", "text": text }),
                        UserPart::Image { mime, data_base64 } => json!({ "type": "image",
                            "source": { "type": "base64", "media_type": mime, "data": data_base64 } }),
                    })
                    .collect(),
            ),
            ChatMessage::Assistant { reasoning, text, tool_calls } => {
                // A turn that thought must show its sealed thinking again when its tool results come back.
                let mut blocks: Vec<Value> = reasoning
                    .iter()
                    .map(|t| json!({ "type": "thinking", "thinking": t.text, "signature": t.signature }))
                    .collect();
                if !text.is_empty() {
                    blocks.push(json!({ "type": "text", "text": text }));
                }
                for call in tool_calls {
                    let input = if call.input.is_object() { call.input.clone() } else { json!({}) };
                    blocks.push(json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": input }));
                }
                push("assistant", blocks);
            }
            ChatMessage::ToolResult { call_id, output, is_error, .. } => push(
                "user",
                vec![json!({ "type": "tool_result", "tool_use_id": call_id, "content": output, "is_error": is_error })],
            ),
        }
    }
    let max_tokens = if request.max_output_tokens > 0 { request.max_output_tokens } else { DEFAULT_MAX_TOKENS };
    let mut body = json!({
        "model": request.model,
        "max_tokens": max_tokens,
        "stream": true,
        "system": request.system,
        "messages": messages,
    });
    if let Some(budget) = request.reasoning_effort.and_then(|effort| thinking_budget(effort, max_tokens)) {
        body["thinking"] = json!({ "type": "enabled", "budget_tokens": budget });
    } else if let Some(t) = request.temperature {
        // Anthropic refuses a temperature beside extended thinking.
        body["temperature"] = json!(t);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({ "name": t.name, "description": t.description, "input_schema": t.input_schema }))
            .collect();
    }
    body
}

/// Anthropic asks for a thinking budget in tokens, out of `max_tokens`: at most half of it goes to thinking, and
/// below the API's minimum of 1024 there is no thinking at all.
fn thinking_budget(effort: ReasoningEffort, max_tokens: u64) -> Option<u64> {
    let wanted: u64 = match effort {
        ReasoningEffort::Default => return None,
        ReasoningEffort::Minimal => 1_024,
        ReasoningEffort::Low => 4_000,
        ReasoningEffort::Medium => 10_000,
        ReasoningEffort::High => 32_000,
    };
    Some(wanted.min(max_tokens / 2)).filter(|b| *b >= 1_024)
}

/// Runs a whole SSE body through this wire's parser and returns what it reports; for fuzzing.
pub(crate) fn replay(body: &[u8]) -> (Vec<super::StreamEvent>, Result<(), ProviderError>) {
    let mut state = State::default();
    super::sse::replay(body, |event, sink| state.on_event(&event, sink), |_| {})
}

#[derive(Default)]
struct State {
    /// Block index → (tool call id, name, accumulated JSON) for `tool_use` blocks.
    tools: HashMap<u64, (String, String, String)>,
    usage: TokenUsage,
    stop_reason: Option<String>,
}

impl State {
    fn on_event(&mut self, event: &super::sse::SseEvent, sink: &EventSink) -> Result<Flow, ProviderError> {
        let data = http::json(event)?;
        match data["type"].as_str().unwrap_or(&event.event) {
            "message_start" => {
                let usage = &data["message"]["usage"];
                self.usage.input = usage["input_tokens"].as_u64().unwrap_or(0);
                self.usage.cache_read = usage["cache_read_input_tokens"].as_u64().unwrap_or(0);
                self.usage.cache_write = usage["cache_creation_input_tokens"].as_u64().unwrap_or(0);
                self.usage.output = usage["output_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" => {
                let block = &data["content_block"];
                if block["type"] == "tool_use" {
                    let index = data["index"].as_u64().unwrap_or(0);
                    let id = block["id"].as_str().unwrap_or_default().to_owned();
                    let name = block["name"].as_str().unwrap_or_default().to_owned();
                    self.tools.insert(index, (id, name, String::new()));
                }
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match delta["type"].as_str().unwrap_or_default() {
                    "text_delta" => {
                        let _ =
                            sink.send(StreamEvent::TextDelta(delta["text"].as_str().unwrap_or_default().to_owned()));
                    }
                    "thinking_delta" => {
                        let text = delta["thinking"].as_str().unwrap_or_default().to_owned();
                        let _ = sink.send(StreamEvent::ReasoningDelta(text));
                    }
                    "signature_delta" => {
                        let signature = delta["signature"].as_str().unwrap_or_default().to_owned();
                        let _ = sink.send(StreamEvent::ReasoningSignature(signature));
                    }
                    "input_json_delta" => {
                        let index = data["index"].as_u64().unwrap_or(0);
                        if let Some((id, _, json)) = self.tools.get_mut(&index) {
                            let part = delta["partial_json"].as_str().unwrap_or_default();
                            json.push_str(part);
                            let _ =
                                sink.send(StreamEvent::ToolInputDelta { call_id: id.clone(), delta: part.to_owned() });
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = data["index"].as_u64().unwrap_or(0);
                if let Some((id, name, json)) = self.tools.remove(&index) {
                    let _ = sink.send(StreamEvent::ToolCall(ToolCall { id, name, input: parse_arguments(&json) }));
                }
            }
            "message_delta" => {
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(output) = data["usage"]["output_tokens"].as_u64() {
                    self.usage.output = output;
                }
            }
            "message_stop" => {
                let _ = sink.send(StreamEvent::Usage(self.usage));
                let reason = match self.stop_reason.as_deref() {
                    Some("tool_use") => "tool_calls",
                    Some("max_tokens") => "length",
                    Some("end_turn") | Some("stop_sequence") | None => "stop",
                    Some(other) => other,
                };
                let _ = sink.send(StreamEvent::Finish(reason.to_owned()));
                return Ok(Flow::Done);
            }
            "error" => {
                let error = &data["error"];
                let message = error["message"].as_str().unwrap_or("stream error").to_owned();
                return Err(match error["type"].as_str().unwrap_or_default() {
                    "overloaded_error" => ProviderError::Server { status: 529, message, retry_after: None },
                    "rate_limit_error" => ProviderError::RateLimited { status: 429, message, retry_after: None },
                    "authentication_error" => ProviderError::Unauthorized { status: 401, message },
                    _ => ProviderError::Server { status: 500, message, retry_after: None },
                });
            }
            _ => {}
        }
        Ok(Flow::Continue)
    }
}
