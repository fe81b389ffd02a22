//! OpenAI Responses: typed output items streamed as named events.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::http::{self, Flow, KeyHeader, Upstream};
use super::openai_chat::parse_arguments;
use super::{
    BoxFuture, ChatMessage, EventSink, Provider, ProviderError, Request, StreamEvent, TokenUsage, ToolCall, UserPart,
};

pub struct OpenAiResponses {
    pub upstream: Upstream,
}

impl Provider for OpenAiResponses {
    fn stream<'a>(&'a self, request: &'a Request, sink: EventSink) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let endpoint = self.upstream.endpoint("responses", KeyHeader::Bearer, &request.extra_headers());
            let mut state = State::default();
            let done = http::stream_sse(endpoint, &self.upstream.shape(request_body(request)), |event| {
                state.on_event(&event, &sink)
            })
            .await?;
            if !done {
                return Err(ProviderError::Interrupted("no response.completed".into()));
            }
            Ok(())
        })
    }
}

pub fn request_body(request: &Request) -> Value {
    let mut input = Vec::new();
    for message in &request.messages {
        match message {
            ChatMessage::User(parts) => {
                let content: Vec<Value> = parts
                    .iter()
                    .map(|p| match p {
                        UserPart::Text(text) => json!({ "type": "input_text", "text": text }),
                        UserPart::Image { mime, data_base64 } => {
                            json!({ "type": "input_image", "image_url": format!("data:{mime};base64,{data_base64}") })
                        }
                    })
                    .collect();
                input.push(json!({ "role": "user", "content": content }));
            }
            ChatMessage::Assistant { text, tool_calls, .. } => {
                if !text.is_empty() {
                    input.push(json!({ "type": "message", "role": "assistant",
                                       "content": [{ "type": "output_text", "text": text }] }));
                }
                for call in tool_calls {
                    input.push(json!({ "type": "function_call", "call_id": call.id, "name": call.name,
                                       "arguments": call.input.to_string() }));
                }
            }
            ChatMessage::ToolResult { call_id, output, .. } => {
                input.push(json!({ "type": "function_call_output", "call_id": call_id, "output": output }));
            }
        }
    }
    let mut body = json!({
        "model": request.model,
        "stream": true,
        "store": false,
        "instructions": request.system,
        "input": input,
    });
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if request.max_output_tokens > 0 {
        body["max_output_tokens"] = json!(request.max_output_tokens);
    }
    if let Some(effort) = request.reasoning_effort {
        body["reasoning"] = json!({ "effort": effort.as_str() });
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({ "type": "function", "name": t.name, "description": t.description, "parameters": t.input_schema }))
            .collect();
    }
    body
}

/// Runs a whole SSE body through this wire's parser and returns what it reports; for fuzzing.
pub(crate) fn replay(body: &[u8]) -> (Vec<super::StreamEvent>, Result<(), ProviderError>) {
    let mut state = State::default();
    super::sse::replay(body, |event, sink| state.on_event(&event, sink), |_| {})
}

#[derive(Default)]
struct State {
    /// Output item id → call id, for argument deltas.
    call_ids: HashMap<String, String>,
    saw_call: bool,
}

impl State {
    fn on_event(&mut self, event: &super::sse::SseEvent, sink: &EventSink) -> Result<Flow, ProviderError> {
        let data = http::json(event)?;
        let kind = data["type"].as_str().unwrap_or(&event.event).to_owned();
        match kind.as_str() {
            "response.output_text.delta" => {
                if let Some(delta) = data["delta"].as_str() {
                    let _ = sink.send(StreamEvent::TextDelta(delta.to_owned()));
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                if let Some(delta) = data["delta"].as_str() {
                    let _ = sink.send(StreamEvent::ReasoningDelta(delta.to_owned()));
                }
            }
            "response.output_item.added" => {
                let item = &data["item"];
                if item["type"] == "function_call" {
                    let id = item["id"].as_str().unwrap_or_default().to_owned();
                    self.call_ids.insert(id, item["call_id"].as_str().unwrap_or_default().to_owned());
                }
            }
            "response.function_call_arguments.delta" => {
                let item = data["item_id"].as_str().unwrap_or_default();
                if let (Some(call_id), Some(delta)) = (self.call_ids.get(item), data["delta"].as_str()) {
                    let _ =
                        sink.send(StreamEvent::ToolInputDelta { call_id: call_id.clone(), delta: delta.to_owned() });
                }
            }
            "response.output_item.done" => {
                let item = &data["item"];
                if item["type"] == "function_call" {
                    self.saw_call = true;
                    let _ = sink.send(StreamEvent::ToolCall(ToolCall {
                        id: item["call_id"].as_str().unwrap_or_default().to_owned(),
                        name: item["name"].as_str().unwrap_or_default().to_owned(),
                        input: parse_arguments(item["arguments"].as_str().unwrap_or_default()),
                    }));
                }
            }
            "response.completed" | "response.incomplete" => {
                let response = &data["response"];
                let usage = &response["usage"];
                let input = usage["input_tokens"].as_u64().unwrap_or(0);
                let cached = usage["input_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0);
                let output = usage["output_tokens"].as_u64().unwrap_or(0);
                let reasoning = usage["output_tokens_details"]["reasoning_tokens"].as_u64().unwrap_or(0);
                let _ = sink.send(StreamEvent::Usage(TokenUsage {
                    input: input.saturating_sub(cached),
                    output: output.saturating_sub(reasoning),
                    reasoning,
                    cache_read: cached,
                    cache_write: 0,
                }));
                let reason = if kind == "response.incomplete" {
                    // One name for "out of output tokens" across the wires, as Chat Completions calls it.
                    match response["incomplete_details"]["reason"].as_str() {
                        Some("max_output_tokens") | None => "length".to_owned(),
                        Some(other) => other.to_owned(),
                    }
                } else if self.saw_call {
                    "tool_calls".to_owned()
                } else {
                    "stop".to_owned()
                };
                let _ = sink.send(StreamEvent::Finish(reason));
                return Ok(Flow::Done);
            }
            "response.failed" | "error" => {
                let error = if kind == "error" { &data } else { &data["response"]["error"] };
                let code = error["code"].as_str().unwrap_or_default();
                let message = error["message"].as_str().unwrap_or("the response failed").to_owned();
                return Err(match code {
                    "context_length_exceeded" => ProviderError::ContextOverflow { message },
                    "rate_limit_exceeded" => ProviderError::RateLimited { status: 429, message, retry_after: None },
                    _ => ProviderError::Server { status: 500, message, retry_after: None },
                });
            }
            _ => {}
        }
        Ok(Flow::Continue)
    }
}
