//! The offline `scripted` provider: not a model. It plays a script file through the same runner path a real
//! provider takes, for people without a model at hand, for frontend authors and for demos. The test suite's mock
//! model server plays the same script format over the real wire formats.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use parking_lot::Mutex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BoxFuture, EventSink, Provider, ProviderError, Request, StreamEvent, TokenUsage, ToolCall};

/// A script: one entry per provider request, played in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Script {
    pub turns: Vec<ScriptTurn>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScriptTurn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ScriptToolCall>,
    /// Before the first byte.
    #[serde(default)]
    pub delay_ms: u64,
    /// Between streamed chunks.
    #[serde(default)]
    pub chunk_delay_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ScriptUsage>,
    /// The finish reason; default `tool_calls` when the turn calls tools, else `stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish: Option<String>,
    /// Fail the request with this HTTP status instead of streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ScriptError>,
    /// Stream the output, then end the stream before it finishes.
    #[serde(default)]
    pub cut: bool,
    /// Send something that is not the wire format.
    #[serde(default)]
    pub garbage: bool,
    /// Answer 200 and end the stream with nothing in it: no content, no finish (what some servers do with a prompt
    /// past their context).
    #[serde(default)]
    pub empty: bool,
    /// Fail in the middle of the stream with the wire's own error event carrying this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScriptToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub input: Value,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScriptUsage {
    #[serde(default)]
    pub input: u64,
    #[serde(default)]
    pub output: u64,
    #[serde(default)]
    pub reasoning: u64,
    #[serde(default)]
    pub cache_read: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScriptError {
    pub status: u16,
    #[serde(default)]
    pub message: String,
    /// Seconds, sent as `retry-after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<f64>,
}

impl ScriptTurn {
    /// The text split into the pieces a stream would deliver: words with their following space.
    pub fn chunks(text: &str) -> Vec<String> {
        let mut chunks = Vec::new();
        let mut current = String::new();
        for c in text.chars() {
            current.push(c);
            if c == ' ' || c == '\n' {
                chunks.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            chunks.push(current);
        }
        chunks
    }

    /// The turn with an id of the provider's shape (`call_`, `toolu_`, followed by random characters) for every
    /// call that the script gives none, as a real server would send; ids the script gives are kept, repeated
    /// ones included, since servers repeat them too.
    pub fn with_call_ids(mut self, prefix: &str) -> Self {
        for call in &mut self.tool_calls {
            if call.id.is_none() {
                call.id = Some(format!("{prefix}{}", uuid::Uuid::now_v7().simple()));
            }
        }
        self
    }

    pub fn call_id(&self, index: usize) -> String {
        self.tool_calls[index].id.clone().unwrap_or_else(|| format!("call_{index}"))
    }

    pub fn finish_reason(&self) -> String {
        self.finish.clone().unwrap_or_else(|| if self.tool_calls.is_empty() { "stop" } else { "tool_calls" }.into())
    }
}

pub const NO_MODEL: &str = "keel has no model configured, so this answer comes from keel's offline scripted provider, \
which is not a model. To use a real one, set OPENAI_API_KEY or ANTHROPIC_API_KEY (or run `keel auth set openai`) \
and pick a model with `--model openai/gpt-5` or `\"model\"` in ~/.config/keel/config.jsonc; for a local \
OpenAI-compatible server, declare it under `providers` with `\"wire\": \"openai-chat\"` and its `baseUrl`.";

/// Plays a script, one turn per request, with a cursor per session.
pub struct Scripted {
    script: Option<Result<Script, String>>,
    cursors: Mutex<HashMap<String, usize>>,
}

impl Scripted {
    pub fn new(script_path: Option<PathBuf>) -> Self {
        let script = script_path.map(|path| {
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read script {}: {e}", path.display())).and_then(
                |text| serde_json::from_str(&text).map_err(|e| format!("script {} is invalid: {e}", path.display())),
            )
        });
        Self { script, cursors: Mutex::new(HashMap::new()) }
    }

    fn next_turn(&self, session_id: &str) -> Result<ScriptTurn, ProviderError> {
        let script = match &self.script {
            None => return Ok(ScriptTurn { text: Some(NO_MODEL.into()), ..Default::default() }),
            Some(Err(e)) => return Err(ProviderError::NotConfigured(e.clone())),
            Some(Ok(script)) => script,
        };
        let mut cursors = self.cursors.lock();
        let cursor = cursors.entry(session_id.to_owned()).or_default();
        let turn = script.turns.get(*cursor).cloned();
        *cursor += 1;
        Ok(turn
            .unwrap_or_else(|| ScriptTurn { text: Some("(the script has no more turns)".into()), ..Default::default() })
            .with_call_ids("call_"))
    }
}

impl Provider for Scripted {
    fn stream<'a>(&'a self, request: &'a Request, sink: EventSink) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let turn = self.next_turn(&request.session_id)?;
            tokio::time::sleep(Duration::from_millis(turn.delay_ms)).await;
            if let Some(error) = &turn.error {
                let body = serde_json::json!({ "error": { "message": error.message } }).to_string();
                return Err(super::http::classify(error.status, &body, error.retry_after.map(Duration::from_secs_f64)));
            }
            if turn.garbage {
                return Err(ProviderError::Malformed("the script sent garbage".into()));
            }
            if turn.empty {
                return Err(ProviderError::Interrupted("the script sent an empty stream".into()));
            }
            if let Some(message) = &turn.stream_error {
                return Err(
                    ProviderError::Server { status: 500, message: message.clone(), retry_after: None }.scrubbed()
                );
            }
            let pause = Duration::from_millis(turn.chunk_delay_ms);
            let pieces = [(turn.reasoning.as_deref(), true), (turn.text.as_deref(), false)];
            for (text, reasoning) in pieces {
                for chunk in ScriptTurn::chunks(text.unwrap_or_default()) {
                    let event =
                        if reasoning { StreamEvent::ReasoningDelta(chunk) } else { StreamEvent::TextDelta(chunk) };
                    let _ = sink.send(event);
                    tokio::time::sleep(pause).await;
                }
            }
            if turn.cut {
                return Err(ProviderError::Interrupted("the script cut the stream".into()));
            }
            for (i, call) in turn.tool_calls.iter().enumerate() {
                let _ = sink.send(StreamEvent::ToolCall(ToolCall {
                    id: turn.call_id(i),
                    name: call.name.clone(),
                    input: call.input.clone(),
                }));
            }
            let usage = turn.usage.unwrap_or_default();
            let _ = sink.send(StreamEvent::Usage(TokenUsage {
                input: usage.input,
                output: usage.output,
                reasoning: usage.reasoning,
                cache_read: usage.cache_read,
                cache_write: 0,
            }));
            let _ = sink.send(StreamEvent::Finish(turn.finish_reason()));
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_without_an_id_get_distinct_ones_of_the_wire_shape_and_given_ids_stay() {
        let call =
            |id: Option<&str>| ScriptToolCall { id: id.map(str::to_owned), name: "list".into(), input: Value::Null };
        let turn = ScriptTurn { tool_calls: vec![call(None), call(Some("call_0")), call(None)], ..Default::default() }
            .with_call_ids("toolu_");
        let ids: Vec<String> = (0..3).map(|i| turn.call_id(i)).collect();
        assert_eq!(ids[1], "call_0");
        assert!(ids[0].starts_with("toolu_") && ids[0].len() == "toolu_".len() + 32, "{ids:?}");
        assert_ne!(ids[0], ids[2]);
    }
}
