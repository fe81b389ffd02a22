//! Model access. A `Provider` streams one turn: it sends the request in its wire format and reports what the model
//! produces as `StreamEvent`s. Retrying, recording and tool execution belong to the runner, not here.

pub mod anthropic;
pub mod auth;
pub mod catalog;
pub mod discover;
mod http;
pub mod models_dev;
pub mod openai_chat;
pub mod openai_responses;
pub mod registry;
pub mod scripted;
mod sse;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One provider request, in keel's terms; each wire module translates it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The provider's own model id (without the `provider/` prefix).
    pub model: String,
    pub system: String,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub max_output_tokens: u64,
    /// Set only for models that reason; never `Default`.
    pub reasoning_effort: Option<keel_protocol::session::ReasoningEffort>,
    /// Unset, the provider's default.
    pub temperature: Option<f64>,
    /// HTTP headers of this request beyond the provider's own (plugins' `chat/params`).
    pub headers: Vec<(String, String)>,
    /// The session, for providers that keep per-session state (the scripted one).
    pub session_id: String,
}

impl Request {
    /// `headers` as the HTTP layer takes them.
    pub fn extra_headers(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChatMessage {
    User(Vec<UserPart>),
    /// `reasoning`: the sealed thinking blocks that preceded the text and calls, for the wires that need them back.
    Assistant {
        reasoning: Vec<Thinking>,
        text: String,
        tool_calls: Vec<ToolCall>,
    },
    ToolResult {
        call_id: String,
        tool: String,
        output: String,
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserPart {
    Text(String),
    Image { mime: String, data_base64: String },
}

/// A reasoning block as the provider sealed it (Anthropic's `thinking` with its `signature`).
#[derive(Debug, Clone, PartialEq)]
pub struct Thinking {
    pub text: String,
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub input: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Input tokens not read from the cache.
    pub input: u64,
    pub output: u64,
    pub reasoning: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// What a provider reports while a turn streams, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    TextDelta(String),
    ReasoningDelta(String),
    /// The seal on the reasoning streamed so far, which ends that block.
    ReasoningSignature(String),
    /// A fragment of a tool call's JSON input, for live display.
    ToolInputDelta {
        call_id: String,
        delta: String,
    },
    /// A complete tool call: it can run now.
    ToolCall(ToolCall),
    Usage(TokenUsage),
    Finish(String),
}

pub type EventSink = mpsc::UnboundedSender<StreamEvent>;

/// The whole answer to a request made for its text alone (a summary, a title).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub usage: TokenUsage,
}

/// Streams a request whose answer is wanted whole; `None` when cancelled first.
pub async fn complete(
    provider: &dyn Provider,
    request: &Request,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Option<Completion>, ProviderError> {
    let (sink, mut events) = mpsc::unbounded_channel();
    let result = tokio::select! {
        result = provider.stream(request, sink) => result,
        _ = cancel.cancelled() => return Ok(None),
    };
    result?;
    let mut completion = Completion::default();
    while let Ok(event) = events.try_recv() {
        match event {
            StreamEvent::TextDelta(delta) => completion.text.push_str(&delta),
            StreamEvent::Usage(usage) => completion.usage = usage,
            _ => {}
        }
    }
    Ok(Some(completion))
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ProviderError {
    #[error("the provider rejected the credentials ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    #[error("unknown model: {message}")]
    UnknownModel { message: String },
    #[error("the conversation is too long for the model's context window: {message}")]
    ContextOverflow { message: String },
    #[error("rate limited ({status}): {message}")]
    RateLimited { status: u16, message: String, retry_after: Option<Duration> },
    #[error("provider error ({status}): {message}")]
    Server { status: u16, message: String, retry_after: Option<Duration> },
    #[error("request rejected ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("cannot reach the provider: {0}")]
    Connection(String),
    #[error("the stream ended before the turn finished: {0}")]
    Interrupted(String),
    #[error("the provider went silent: {0}")]
    TimedOut(String),
    #[error("the provider sent a malformed stream: {0}")]
    Malformed(String),
    #[error("{0}")]
    NotConfigured(String),
}

impl ProviderError {
    /// The same error with every known secret taken out of its message.
    pub fn scrubbed(self) -> Self {
        use crate::secret::scrub_owned as s;
        match self {
            Self::Unauthorized { status, message } => Self::Unauthorized { status, message: s(message) },
            Self::UnknownModel { message } => Self::UnknownModel { message: s(message) },
            Self::ContextOverflow { message } => Self::ContextOverflow { message: s(message) },
            Self::RateLimited { status, message, retry_after } => {
                Self::RateLimited { status, message: s(message), retry_after }
            }
            Self::Server { status, message, retry_after } => Self::Server { status, message: s(message), retry_after },
            Self::Rejected { status, message } => Self::Rejected { status, message: s(message) },
            Self::Connection(message) => Self::Connection(s(message)),
            Self::Interrupted(message) => Self::Interrupted(s(message)),
            Self::TimedOut(message) => Self::TimedOut(s(message)),
            Self::Malformed(message) => Self::Malformed(s(message)),
            Self::NotConfigured(message) => Self::NotConfigured(s(message)),
        }
    }

    /// Transient failures that the same request may get past.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Connection(_)
                | Self::Interrupted(_)
                | Self::TimedOut(_)
        )
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "unauthorized",
            Self::UnknownModel { .. } => "unknown_model",
            Self::ContextOverflow { .. } => "context_overflow",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::Rejected { .. } => "other",
            Self::Connection(_) => "connection",
            Self::Interrupted(_) => "interrupted_stream",
            Self::TimedOut(_) => "timeout",
            Self::Malformed(_) => "malformed_stream",
            Self::NotConfigured(_) => "not_configured",
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { status, .. }
            | Self::RateLimited { status, .. }
            | Self::Server { status, .. }
            | Self::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One model endpoint in one wire format.
pub trait Provider: Send + Sync {
    /// Streams one turn into `sink`. Returns when the turn finished or failed; dropping the future aborts it.
    fn stream<'a>(&'a self, request: &'a Request, sink: EventSink) -> BoxFuture<'a, Result<(), ProviderError>>;
}

/// The wire formats keel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Wire {
    OpenaiChat,
    OpenaiResponses,
    Anthropic,
    /// keel's offline stand-in; not a model.
    Scripted,
    /// Served by a plugin (`provider/register`); never written in config.
    #[serde(skip_deserializing)]
    Plugin,
}

impl Wire {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenaiChat => "openai-chat",
            Self::OpenaiResponses => "openai-responses",
            Self::Anthropic => "anthropic",
            Self::Scripted => "scripted",
            Self::Plugin => "plugin",
        }
    }
}
