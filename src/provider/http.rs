//! The HTTP half shared by the wire formats: POST a JSON body, map failures to typed errors, feed the SSE body to
//! the wire module event by event.

use std::time::Duration;

use serde_json::Value;

use super::ProviderError;
use super::sse::{SseEvent, SseParser};

/// What a wire module says after each event.
pub enum Flow {
    Continue,
    /// The wire's terminal event arrived; the rest of the body is ignored.
    Done,
}

/// Where and how one provider is reached; each wire format adds its path and how the key is sent.
#[derive(Clone)]
pub struct Upstream {
    pub client: reqwest::Client,
    pub base_url: String,
    pub api_key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub timeouts: Timeouts,
    /// Config's `body`: merged into every request body, for servers that need a field keel does not send.
    pub body: Option<serde_json::Value>,
}

/// How long a provider may stay silent: a server that accepts a request and then sends nothing must not hold a
/// session for minutes. Each expiry is a transient failure, retried within the retry budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From sending the request to the first byte of the body.
    pub first_byte: Duration,
    /// Between two chunks of the body.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { first_byte: Duration::from_secs(60), idle: Duration::from_secs(90) }
    }
}

/// How a wire format sends the key.
pub enum KeyHeader {
    /// `authorization: Bearer KEY` (OpenAI and compatible servers).
    Bearer,
    /// `x-api-key: KEY` (Anthropic).
    XApiKey,
}

impl Upstream {
    /// A request body with config's `body` merged in: objects merge key by key, `null` removes a key, anything
    /// else replaces.
    pub fn shape(&self, mut body: serde_json::Value) -> serde_json::Value {
        if let Some(overrides) = &self.body {
            merge(&mut body, overrides);
        }
        body
    }

    pub fn endpoint(&self, path: &str, key: KeyHeader, extra: &[(&str, &str)]) -> Endpoint<'_> {
        let mut headers = self.headers.clone();
        headers.extend(extra.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())));
        if let Some(api_key) = &self.api_key {
            headers.push(match key {
                KeyHeader::Bearer => ("authorization".into(), format!("Bearer {api_key}")),
                KeyHeader::XApiKey => ("x-api-key".into(), api_key.clone()),
            });
        }
        Endpoint {
            client: &self.client,
            url: format!("{}/{path}", self.base_url.trim_end_matches('/')),
            headers,
            secret: self.api_key.as_deref(),
            timeouts: self.timeouts,
        }
    }
}

fn merge(base: &mut serde_json::Value, overrides: &serde_json::Value) {
    let (Some(base), Some(overrides)) = (base.as_object_mut(), overrides.as_object()) else {
        *base = overrides.clone();
        return;
    };
    for (key, value) in overrides {
        match (value, base.get_mut(key)) {
            (serde_json::Value::Null, _) => {
                base.remove(key);
            }
            (serde_json::Value::Object(_), Some(existing)) if existing.is_object() => merge(existing, value),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

pub struct Endpoint<'a> {
    pub client: &'a reqwest::Client,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Scrubbed from every error message, whatever the server echoes back.
    pub secret: Option<&'a str>,
    pub timeouts: Timeouts,
}

/// Sends the request and streams its events into `on_event`. Returns whether the wire's terminal event was seen.
pub async fn stream_sse(
    endpoint: Endpoint<'_>,
    body: &Value,
    mut on_event: impl FnMut(SseEvent) -> Result<Flow, ProviderError>,
) -> Result<bool, ProviderError> {
    if let Some(secret) = endpoint.secret {
        crate::secret::remember(secret);
    }
    let scrub = crate::secret::scrub_owned;
    let mut request = endpoint.client.post(&endpoint.url).header("content-type", "application/json");
    for (name, value) in &endpoint.headers {
        request = request.header(name, value);
    }
    let Timeouts { first_byte, idle } = endpoint.timeouts;
    let first_byte_by = tokio::time::Instant::now() + first_byte;
    let silent = |what: &str, after: Duration| ProviderError::TimedOut(format!("no {what} within {after:?}"));
    let mut response = tokio::time::timeout_at(first_byte_by, request.body(body.to_string()).send())
        .await
        .map_err(|_| silent("response", first_byte))?
        .map_err(|e| ProviderError::Connection(scrub(describe(&e))))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        let retry_after = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        return Err(classify(status, &scrub(text), retry_after));
    }
    let mut parser = SseParser::default();
    let mut first = true;
    loop {
        let next = if std::mem::take(&mut first) {
            tokio::time::timeout_at(first_byte_by, response.chunk()).await.map_err(|_| silent("first byte", first_byte))
        } else {
            tokio::time::timeout(idle, response.chunk()).await.map_err(|_| silent("data", idle))
        };
        let chunk = match next? {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Err(ProviderError::Interrupted(scrub(describe(&e)))),
        };
        for event in parser.push(&chunk) {
            // An in-stream error event may quote the request, key included.
            if let Flow::Done = on_event(event).map_err(ProviderError::scrubbed)? {
                return Ok(true);
            }
        }
    }
    if let Some(event) = parser.finish()
        && let Flow::Done = on_event(event).map_err(ProviderError::scrubbed)?
    {
        return Ok(true);
    }
    Ok(false)
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `retry-after-ms`, or `retry-after` in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    get("retry-after").and_then(|v| v.parse::<f64>().ok()).map(|s| Duration::from_secs_f64(s.max(0.0)))
}

/// The provider's own message, from the usual JSON error shapes or the raw body.
pub fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v["error"]["message"]
            .as_str()
            .or_else(|| v["message"].as_str())
            .or_else(|| v["error"].as_str())
            .map(str::to_owned)
    });
    let mut message = message.unwrap_or_else(|| body.trim().to_owned());
    if message.len() > 500 {
        let mut end = 500;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> ProviderError {
    let message = error_message(body);
    let lower = body.to_ascii_lowercase();
    // OpenAI's code, Anthropic's message, and what OpenAI-compatible servers say in plain text: vLLM ("maximum
    // context length"), llama.cpp ("exceeds the available context size"), Ollama ("prompt too long", "context
    // length").
    let overflow = [
        "context_length_exceeded",
        "prompt is too long",
        "prompt too long",
        "maximum context length",
        "context window",
        "context length",
        "exceeds the available context size",
        "exceed_context_size",
    ]
    .iter()
    .any(|needle| lower.contains(needle));
    let unknown_model = lower.contains("model")
        && ["not found", "not_found", "does not exist", "unknown model", "model_not_found"]
            .iter()
            .any(|needle| lower.contains(needle));
    match status {
        401 | 403 => ProviderError::Unauthorized { status, message },
        429 => ProviderError::RateLimited { status, message, retry_after },
        // Some servers answer an overlong prompt with a 500; it is not worth a retry.
        _ if overflow => ProviderError::ContextOverflow { message },
        500..=599 => ProviderError::Server { status, message, retry_after },
        404 | 400 if unknown_model => ProviderError::UnknownModel { message },
        _ => ProviderError::Rejected { status, message },
    }
}

/// Parses one event's JSON data, or says the stream is malformed.
pub fn json(event: &SseEvent) -> Result<Value, ProviderError> {
    serde_json::from_str(&event.data).map_err(|e| {
        let data: String = event.data.chars().take(120).collect();
        ProviderError::Malformed(format!("{e} in {data:?}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_provider_failures() {
        let check = |status: u16, body: &str, kind: &str| {
            assert_eq!(classify(status, body, None).kind(), kind, "{status} {body}");
        };
        check(401, r#"{"error":{"message":"bad key"}}"#, "unauthorized");
        check(429, "{}", "rate_limited");
        check(529, r#"{"type":"error","error":{"type":"overloaded_error"}}"#, "server_error");
        check(400, r#"{"error":{"code":"context_length_exceeded","message":"too long"}}"#, "context_overflow");
        check(400, r#"{"type":"error","error":{"message":"prompt is too long: 210000 tokens"}}"#, "context_overflow");
        let vllm = "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.";
        check(400, &format!(r#"{{"object":"error","message":"{vllm}","code":400}}"#), "context_overflow");
        let llama = r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error"}}"#;
        check(400, llama, "context_overflow");
        check(500, r#"{"error":"prompt too long; exceeded max context length by 12 tokens"}"#, "context_overflow");
        check(404, r#"{"error":{"message":"The model `gpt-9` does not exist"}}"#, "unknown_model");
        check(400, r#"{"error":{"message":"bad request"}}"#, "other");
        assert_eq!(error_message(r#"{"error":{"message":"x"}}"#), "x");
    }

    #[test]
    fn malformed_events_are_errors_even_with_multibyte_text() {
        let data = format!("{{\"choices\": \"{}", "日本語".repeat(100));
        let event = super::super::sse::SseEvent { event: "message".into(), data };
        assert!(matches!(json(&event), Err(ProviderError::Malformed(_))));
    }
}
