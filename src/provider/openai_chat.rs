//! OpenAI Chat Completions, which every OpenAI-compatible server speaks (Ollama, vLLM, llama.cpp, OpenRouter…).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::http::{self, Flow, KeyHeader, Upstream};
use super::{
    BoxFuture, ChatMessage, EventSink, Provider, ProviderError, Request, StreamEvent, TokenUsage, ToolCall, UserPart,
};

pub struct OpenAiChat {
    pub upstream: Upstream,
}

impl Provider for OpenAiChat {
    fn stream<'a>(&'a self, request: &'a Request, sink: EventSink) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let endpoint = self.upstream.endpoint("chat/completions", KeyHeader::Bearer, &request.extra_headers());
            let mut state = State::default();
            let done = http::stream_sse(endpoint, &self.upstream.shape(request_body(request)), |event| {
                state.on_event(&event, &sink)
            })
            .await?;
            if !done && state.finish_reason.is_none() {
                return Err(ProviderError::Interrupted("no finish_reason and no [DONE]".into()));
            }
            state.finish(&sink);
            Ok(())
        })
    }
}

pub fn request_body(request: &Request) -> Value {
    let mut messages = vec![json!({ "role": "system", "content": request.system })];
    for message in &request.messages {
        messages.push(match message {
            ChatMessage::User(parts) => json!({ "role": "user", "content": user_content(parts) }),
            ChatMessage::Assistant { text, tool_calls, .. } => {
                // Some servers (llama-cpp-python) refuse `null` content beside tool calls; all take "".
                let mut m = json!({ "role": "assistant", "content": text });
                if !tool_calls.is_empty() {
                    m["tool_calls"] = tool_calls
                        .iter()
                        .map(|c| {
                            json!({ "id": c.id, "type": "function",
                                    "function": { "name": c.name, "arguments": c.input.to_string() } })
                        })
                        .collect();
                }
                m
            }
            ChatMessage::ToolResult { call_id, output, .. } => {
                json!({ "role": "tool", "tool_call_id": call_id, "content": output })
            }
        });
    }
    let mut body = json!({
        "model": request.model,
        "stream": true,
        "stream_options": { "include_usage": true },
        "messages": messages,
    });
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if request.max_output_tokens > 0 {
        body["max_tokens"] = json!(request.max_output_tokens);
    }
    if let Some(effort) = request.reasoning_effort {
        body["reasoning_effort"] = json!(effort.as_str());
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({ "type": "function", "function": { "name": t.name, "description": t.description, "parameters": t.input_schema } }))
            .collect();
    }
    body
}

fn user_content(parts: &[UserPart]) -> Value {
    if let [UserPart::Text(text)] = parts {
        return json!(text);
    }
    parts
        .iter()
        .map(|p| match p {
            UserPart::Text(text) => json!({ "type": "text", "text": text }),
            UserPart::Image { mime, data_base64 } => {
                json!({ "type": "image_url", "image_url": { "url": format!("data:{mime};base64,{data_base64}") } })
            }
        })
        .collect()
}

/// Runs a whole SSE body through this wire's parser and returns what it reports; for fuzzing.
pub(crate) fn replay(body: &[u8]) -> (Vec<super::StreamEvent>, Result<(), ProviderError>) {
    let state = std::cell::RefCell::new(State::default());
    super::sse::replay(body, |event, sink| state.borrow_mut().on_event(&event, sink), |sink| state.take().finish(sink))
}

#[derive(Default)]
struct State {
    calls: BTreeMap<u64, PendingCall>,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
}

#[derive(Default)]
struct PendingCall {
    id: String,
    name: String,
    arguments: String,
}

impl PendingCall {
    /// The provider's id, or, from a server that sends none, one made from the call's index: the same for its
    /// input deltas and the finished call, so that each call's deltas stay with it.
    fn id_or(&self, index: u64) -> String {
        if self.id.is_empty() { format!("call_{index}") } else { self.id.clone() }
    }
}

impl State {
    fn on_event(&mut self, event: &super::sse::SseEvent, sink: &EventSink) -> Result<Flow, ProviderError> {
        if event.data.trim() == "[DONE]" {
            return Ok(Flow::Done);
        }
        let chunk = http::json(event)?;
        if let Some(error) = chunk.get("error") {
            let status = error["code"].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
            return Err(http::classify(status, &json!({ "error": error }).to_string(), None));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            let prompt = usage["prompt_tokens"].as_u64().unwrap_or(0);
            let cached = usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0);
            let completion = usage["completion_tokens"].as_u64().unwrap_or(0);
            let reasoning = usage["completion_tokens_details"]["reasoning_tokens"].as_u64().unwrap_or(0);
            self.usage = Some(TokenUsage {
                input: prompt.saturating_sub(cached),
                output: completion.saturating_sub(reasoning),
                reasoning,
                cache_read: cached,
                cache_write: 0,
            });
        }
        let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) else {
            return Ok(Flow::Continue);
        };
        let delta = &choice["delta"];
        for key in ["reasoning_content", "reasoning"] {
            if let Some(text) = delta[key].as_str().filter(|t| !t.is_empty()) {
                let _ = sink.send(StreamEvent::ReasoningDelta(text.to_owned()));
            }
        }
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            let _ = sink.send(StreamEvent::TextDelta(text.to_owned()));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap_or(0);
            let pending = self.calls.entry(index).or_default();
            if let Some(id) = call["id"].as_str() {
                pending.id = id.to_owned();
            }
            // Most servers send the name once; some split it across chunks; llama.cpp repeats it whole in every
            // chunk. A chunk that repeats the name so far is the last kind, not a second half.
            if let Some(name) = call["function"]["name"].as_str()
                && name != pending.name
            {
                pending.name.push_str(name);
            }
            if let Some(args) = call["function"]["arguments"].as_str() {
                pending.arguments.push_str(args);
                if !args.is_empty() {
                    let call_id = pending.id_or(index);
                    let _ = sink.send(StreamEvent::ToolInputDelta { call_id, delta: args.to_owned() });
                }
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_owned());
        }
        Ok(Flow::Continue)
    }

    fn finish(self, sink: &EventSink) {
        for (index, call) in self.calls {
            let _ = sink.send(StreamEvent::ToolCall(ToolCall {
                id: call.id_or(index),
                name: call.name,
                input: parse_arguments(&call.arguments),
            }));
        }
        if let Some(usage) = self.usage {
            let _ = sink.send(StreamEvent::Usage(usage));
        }
        let _ = sink.send(StreamEvent::Finish(self.finish_reason.unwrap_or_else(|| "stop".into())));
    }
}

/// Tool arguments as the model wrote them; text that is not JSON is passed on for the tool to reject.
pub fn parse_arguments(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}
