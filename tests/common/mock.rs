//! A mock model server on 127.0.0.1 that streams exactly what the real providers stream: OpenAI Chat Completions
//! (`/chat/completions`), OpenAI Responses (`/responses`) and Anthropic Messages (`/messages`). It plays the same
//! script format as keel's offline provider, one turn per request, and records every request for assertions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel::provider::scripted::ScriptTurn;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wire {
    Chat,
    Responses,
    Anthropic,
}

impl Wire {
    pub const ALL: [Wire; 3] = [Wire::Chat, Wire::Responses, Wire::Anthropic];

    pub fn config_name(self) -> &'static str {
        match self {
            Wire::Chat => "openai-chat",
            Wire::Responses => "openai-responses",
            Wire::Anthropic => "anthropic",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    turns: VecDeque<ScriptTurn>,
    requests: Vec<Recorded>,
    dialect: Dialect,
    /// What `GET /v1/models` lists (`data[]` entries); such requests are answered apart from the turns.
    models: Vec<Value>,
}

/// How an OpenAI-compatible server deviates from OpenAI's own stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    #[default]
    OpenAi,
    /// llama.cpp and llama-cpp-python: the function name repeated in every tool-call chunk, and no usage.
    LlamaCpp,
    /// Tool-call chunks without an `id` (some local servers): calls are told apart by their `index` alone.
    NoCallIds,
    /// Reasoning under `reasoning` (OpenRouter, vLLM's newer parsers) instead of `reasoning_content`.
    ReasoningKey,
    /// Usage inside the chunk that carries `finish_reason` instead of a chunk of its own after it.
    UsageInLastChunk,
    /// Error bodies in plain text, not JSON (proxies, some servers' 400s).
    PlainTextErrors,
    /// The function name split across two chunks.
    SplitNames,
}

#[derive(Clone)]
pub struct MockModel {
    pub port: u16,
    state: Arc<Mutex<State>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl MockModel {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mock = Self { port, state: Arc::default(), in_flight: Arc::default(), max_in_flight: Arc::default() };
        let server = mock.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.serve(stream).await });
            }
        });
        mock
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn dialect(&self, dialect: Dialect) {
        self.state.lock().unwrap().dialect = dialect;
    }

    /// The models `GET /v1/models` lists from now on.
    pub fn list_models(&self, models: Vec<Value>) {
        self.state.lock().unwrap().models = models;
    }

    pub fn push(&self, turn: ScriptTurn) {
        self.state.lock().unwrap().turns.push_back(turn);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The most requests that were being answered at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    async fn serve(&self, mut stream: TcpStream) {
        // One request per connection is enough: every response closes or ends its stream.
        let Some((path, headers, body)) = read_request(&mut stream).await else { return };
        if path.ends_with("/api/show") {
            // Ollama's model details: the context length under the architecture's name.
            let body =
                json!({ "model_info": { "general.architecture": "qwen3", "qwen3.context_length": 40960 } }).to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            return;
        }
        if path.ends_with("/models") {
            let data = self.state.lock().unwrap().models.clone();
            let body = json!({ "object": "list", "data": data }).to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            return;
        }
        let (turn, dialect) = {
            let mut state = self.state.lock().unwrap();
            let dialect = state.dialect;
            state.requests.push(Recorded { path: path.clone(), headers, body });
            let turn = state
                .turns
                .pop_front()
                .unwrap_or_else(|| ScriptTurn { text: Some("(mock: no more turns)".into()), ..Default::default() });
            (turn, dialect)
        };
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let wire = if path.ends_with("/chat/completions") {
            Wire::Chat
        } else if path.ends_with("/responses") {
            Wire::Responses
        } else {
            Wire::Anthropic
        };
        let turn = turn.with_call_ids(if wire == Wire::Anthropic { "toolu_" } else { "call_" });
        respond(&mut stream, wire, &turn, dialect).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<(String, String)>, Value)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let path = lines.next()?.split_whitespace().nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned())))
        .collect();
    let length: usize =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
    Some((path, headers, body))
}

async fn respond(stream: &mut TcpStream, wire: Wire, turn: &ScriptTurn, dialect: Dialect) {
    tokio::time::sleep(Duration::from_millis(turn.delay_ms)).await;
    if let Some(error) = &turn.error {
        let (body, content_type) = match wire {
            _ if dialect == Dialect::PlainTextErrors => (error.message.clone(), "text/plain"),
            Wire::Anthropic => (
                json!({ "type": "error", "error": { "type": "api_error", "message": error.message } }).to_string(),
                "application/json",
            ),
            _ => (
                json!({ "error": { "message": error.message, "type": "error", "code": null } }).to_string(),
                "application/json",
            ),
        };
        let retry = error.retry_after.map(|s| format!("retry-after: {s}\r\n")).unwrap_or_default();
        let head = format!(
            "HTTP/1.1 {} Error\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{retry}connection: close\r\n\r\n",
            error.status,
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body.as_bytes()).await;
        return;
    }
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let events = match wire {
        // A 200 and then nothing, whatever the wire.
        _ if turn.empty => Vec::new(),
        Wire::Chat if dialect == Dialect::LlamaCpp => sse::chat_llama_cpp(turn),
        Wire::Chat => sse::chat(turn, dialect),
        Wire::Responses => sse::responses(turn),
        Wire::Anthropic => sse::anthropic(turn),
    };
    for event in events {
        if let sse::Item::Cut = event {
            // Close the connection mid-stream, without the terminating chunk.
            let _ = stream.shutdown().await;
            return;
        }
        let sse::Item::Event(text) = event else { continue };
        let chunk = format!("{:x}\r\n{text}\r\n", text.len());
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            return;
        }
        let _ = stream.flush().await;
        if turn.chunk_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(turn.chunk_delay_ms)).await;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
}

/// SSE bodies built from small constructors, one per event the real services send.
pub mod sse {
    use super::Dialect;
    use keel::provider::scripted::ScriptTurn;
    use serde_json::{Value, json};

    pub enum Item {
        Event(String),
        Cut,
    }

    fn data(value: Value) -> Item {
        Item::Event(format!("data: {value}\n\n"))
    }

    fn named(name: &str, mut value: Value) -> Item {
        value["type"] = json!(name);
        Item::Event(format!("event: {name}\ndata: {value}\n\n"))
    }

    fn garbage() -> Item {
        Item::Event("data: {\"choices\": [ this is not json\n\n".into())
    }

    // OpenAI Chat Completions.

    pub fn chat_chunk(delta: Value, finish: Option<&str>) -> Item {
        data(json!({ "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": "mock",
                     "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] }))
    }

    pub fn chat_usage(input: u64, output: u64) -> Item {
        data(
            json!({ "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": "mock", "choices": [],
                     "usage": { "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output } }),
        )
    }

    pub fn chat_done() -> Item {
        Item::Event("data: [DONE]\n\n".into())
    }

    pub fn chat(turn: &ScriptTurn, dialect: Dialect) -> Vec<Item> {
        if turn.garbage {
            return vec![chat_chunk(json!({ "role": "assistant", "content": "" }), None), garbage()];
        }
        if let Some(message) = &turn.stream_error {
            let error = json!({ "error": { "message": message, "type": "invalid_request_error", "code": 400 } });
            return vec![chat_chunk(json!({ "role": "assistant", "content": "" }), None), data(error)];
        }
        let mut out = vec![chat_chunk(json!({ "role": "assistant", "content": "" }), None)];
        let reasoning_key = if dialect == Dialect::ReasoningKey { "reasoning" } else { "reasoning_content" };
        for piece in ScriptTurn::chunks(turn.reasoning.as_deref().unwrap_or_default()) {
            out.push(chat_chunk(json!({ reasoning_key: piece }), None));
        }
        for piece in ScriptTurn::chunks(turn.text.as_deref().unwrap_or_default()) {
            out.push(chat_chunk(json!({ "content": piece }), None));
        }
        if turn.cut {
            out.push(Item::Cut);
            return out;
        }
        for (i, call) in turn.tool_calls.iter().enumerate() {
            let args = call.input.to_string();
            let (a, b) = args.split_at(args.len() / 2);
            let (first, rest) = match dialect {
                Dialect::SplitNames => call.name.split_at(call.name.len() / 2),
                _ => (call.name.as_str(), ""),
            };
            let mut opening = json!({ "index": i, "type": "function", "function": { "name": first, "arguments": "" } });
            if dialect != Dialect::NoCallIds {
                opening["id"] = json!(turn.call_id(i));
            }
            out.push(chat_chunk(json!({ "tool_calls": [opening] }), None));
            if !rest.is_empty() {
                out.push(chat_chunk(json!({ "tool_calls": [{ "index": i, "function": { "name": rest } }] }), None));
            }
            out.push(chat_chunk(json!({ "tool_calls": [{ "index": i, "function": { "arguments": a } }] }), None));
            out.push(chat_chunk(json!({ "tool_calls": [{ "index": i, "function": { "arguments": b } }] }), None));
        }
        let usage = turn.usage.unwrap_or_default();
        let usage_json = json!({ "prompt_tokens": usage.input, "completion_tokens": usage.output,
                                 "total_tokens": usage.input + usage.output });
        if dialect == Dialect::UsageInLastChunk {
            out.push(data(json!({ "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1,
                "model": "mock", "choices": [{ "index": 0, "delta": {}, "finish_reason": turn.finish_reason() }],
                "usage": usage_json })));
        } else {
            out.push(chat_chunk(json!({}), Some(&turn.finish_reason())));
            out.push(chat_usage(usage.input, usage.output));
        }
        out.push(chat_done());
        out
    }

    /// llama.cpp's dialect: every tool-call chunk repeats the id and the whole function name; no usage chunk.
    pub fn chat_llama_cpp(turn: &ScriptTurn) -> Vec<Item> {
        let mut out = vec![chat_chunk(json!({ "role": "assistant", "content": null }), None)];
        for piece in ScriptTurn::chunks(turn.text.as_deref().unwrap_or_default()) {
            out.push(chat_chunk(json!({ "content": piece }), None));
        }
        for (i, call) in turn.tool_calls.iter().enumerate() {
            let args = call.input.to_string();
            let (a, b) = args.split_at(args.len() / 2);
            for piece in ["", a, b] {
                out.push(chat_chunk(
                    json!({ "tool_calls": [{ "index": i, "id": turn.call_id(i), "type": "function",
                                             "function": { "name": call.name, "arguments": piece } }] }),
                    None,
                ));
            }
        }
        out.push(chat_chunk(json!({}), Some(&turn.finish_reason())));
        out.push(chat_done());
        out
    }

    // OpenAI Responses.

    pub fn responses(turn: &ScriptTurn) -> Vec<Item> {
        let mut out =
            vec![named("response.created", json!({ "response": { "id": "resp_mock", "status": "in_progress" } }))];
        if turn.garbage {
            out.push(garbage());
            return out;
        }
        if let Some(message) = &turn.stream_error {
            out.push(named("error", json!({ "code": "server_error", "message": message, "param": null })));
            return out;
        }
        let mut index = 0;
        if let Some(reasoning) = &turn.reasoning {
            out.push(named(
                "response.output_item.added",
                json!({ "output_index": index, "item": { "type": "reasoning", "id": "rs_1", "summary": [] } }),
            ));
            for piece in ScriptTurn::chunks(reasoning) {
                out.push(named(
                    "response.reasoning_summary_text.delta",
                    json!({ "item_id": "rs_1", "output_index": index, "summary_index": 0, "delta": piece }),
                ));
            }
            out.push(named(
                "response.output_item.done",
                json!({ "output_index": index, "item": { "type": "reasoning", "id": "rs_1" } }),
            ));
            index += 1;
        }
        if let Some(text) = &turn.text {
            out.push(named("response.output_item.added", json!({ "output_index": index,
                "item": { "type": "message", "id": "msg_1", "role": "assistant", "status": "in_progress", "content": [] } })));
            out.push(named(
                "response.content_part.added",
                json!({ "item_id": "msg_1", "output_index": index, "content_index": 0,
                "part": { "type": "output_text", "text": "" } }),
            ));
            for piece in ScriptTurn::chunks(text) {
                out.push(named(
                    "response.output_text.delta",
                    json!({ "item_id": "msg_1", "output_index": index, "content_index": 0, "delta": piece }),
                ));
            }
            if turn.cut {
                out.push(Item::Cut);
                return out;
            }
            out.push(named(
                "response.output_text.done",
                json!({ "item_id": "msg_1", "output_index": index, "content_index": 0, "text": text }),
            ));
            out.push(named(
                "response.output_item.done",
                json!({ "output_index": index,
                "item": { "type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                          "content": [{ "type": "output_text", "text": text }] } }),
            ));
            index += 1;
        } else if turn.cut {
            out.push(Item::Cut);
            return out;
        }
        for (i, call) in turn.tool_calls.iter().enumerate() {
            let item_id = format!("fc_{i}");
            let args = call.input.to_string();
            out.push(named("response.output_item.added", json!({ "output_index": index,
                "item": { "type": "function_call", "id": item_id, "call_id": turn.call_id(i), "name": call.name, "arguments": "", "status": "in_progress" } })));
            out.push(named(
                "response.function_call_arguments.delta",
                json!({ "item_id": item_id, "output_index": index, "delta": args }),
            ));
            out.push(named(
                "response.function_call_arguments.done",
                json!({ "item_id": item_id, "output_index": index, "arguments": args }),
            ));
            out.push(named("response.output_item.done", json!({ "output_index": index,
                "item": { "type": "function_call", "id": item_id, "call_id": turn.call_id(i), "name": call.name, "arguments": args, "status": "completed" } })));
            index += 1;
        }
        let usage = turn.usage.unwrap_or_default();
        out.push(named("response.completed", json!({ "response": { "id": "resp_mock", "status": "completed",
            "usage": { "input_tokens": usage.input, "output_tokens": usage.output, "total_tokens": usage.input + usage.output,
                       "input_tokens_details": { "cached_tokens": 0 }, "output_tokens_details": { "reasoning_tokens": 0 } } } })));
        out
    }

    // Anthropic Messages.

    pub fn anthropic(turn: &ScriptTurn) -> Vec<Item> {
        let usage = turn.usage.unwrap_or_default();
        let mut out = vec![named(
            "message_start",
            json!({ "message": { "id": "msg_mock", "type": "message", "role": "assistant",
            "content": [], "model": "mock", "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": usage.input, "output_tokens": 1 } } }),
        )];
        out.push(named("ping", json!({})));
        if turn.garbage {
            out.push(garbage());
            return out;
        }
        if let Some(message) = &turn.stream_error {
            out.push(named("error", json!({ "error": { "type": "invalid_request_error", "message": message } })));
            return out;
        }
        let mut index = 0;
        if let Some(reasoning) = &turn.reasoning {
            out.push(named(
                "content_block_start",
                json!({ "index": index, "content_block": { "type": "thinking", "thinking": "" } }),
            ));
            for piece in ScriptTurn::chunks(reasoning) {
                out.push(named(
                    "content_block_delta",
                    json!({ "index": index, "delta": { "type": "thinking_delta", "thinking": piece } }),
                ));
            }
            out.push(named(
                "content_block_delta",
                json!({ "index": index, "delta": { "type": "signature_delta", "signature": "c2ln" } }),
            ));
            out.push(named("content_block_stop", json!({ "index": index })));
            index += 1;
        }
        if let Some(text) = &turn.text {
            out.push(named(
                "content_block_start",
                json!({ "index": index, "content_block": { "type": "text", "text": "" } }),
            ));
            for piece in ScriptTurn::chunks(text) {
                out.push(named(
                    "content_block_delta",
                    json!({ "index": index, "delta": { "type": "text_delta", "text": piece } }),
                ));
            }
            if turn.cut {
                out.push(Item::Cut);
                return out;
            }
            out.push(named("content_block_stop", json!({ "index": index })));
            index += 1;
        } else if turn.cut {
            out.push(Item::Cut);
            return out;
        }
        for (i, call) in turn.tool_calls.iter().enumerate() {
            out.push(named(
                "content_block_start",
                json!({ "index": index,
                "content_block": { "type": "tool_use", "id": turn.call_id(i), "name": call.name, "input": {} } }),
            ));
            let args = call.input.to_string();
            let (a, b) = args.split_at(args.len() / 2);
            for part in [a, b] {
                out.push(named(
                    "content_block_delta",
                    json!({ "index": index, "delta": { "type": "input_json_delta", "partial_json": part } }),
                ));
            }
            out.push(named("content_block_stop", json!({ "index": index })));
            index += 1;
        }
        let stop = if turn.tool_calls.is_empty() { "end_turn" } else { "tool_use" };
        out.push(named("message_delta", json!({ "delta": { "stop_reason": stop, "stop_sequence": null }, "usage": { "output_tokens": usage.output } })));
        out.push(named("message_stop", json!({})));
        out
    }
}
