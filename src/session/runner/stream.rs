//! One provider attempt as it streams: deltas batched out to subscribers, parts and tool calls recorded as they
//! complete, and each tool call started at once behind the permission gate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_protocol::agent::SkillLoadedData;
use keel_protocol::catalogue::{EventBody, EventKind};
use keel_protocol::plugin::Hook;
use keel_protocol::turn::{DeltaKind, PartCompletedData, ToolCalledData, ToolFailedData, ToolStartedData};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::turn::Turn;
use super::{Activity, id, output_limits, settlement};
use crate::provider::{ProviderError, Request, StreamEvent, TokenUsage, ToolCall};
use crate::session::approval::{self, Gate};
use crate::session::{Delta, Error, Services, event};
use crate::store::NewEvent;
use crate::tool::{ToolContext, output};

/// Streamed fragments are sent at most this often per part, or when this many bytes wait.
const DELTA_INTERVAL: Duration = Duration::from_millis(25);
const DELTA_BYTES: usize = 2048;
pub(super) enum StreamResult {
    Finished { finish_reason: String, usage: Measured },
    Failed(ProviderError),
    Interrupted,
}

/// What a finished attempt used: the provider's figures, or, from a server that reports none, the sizes of what
/// the model wrote, for an estimate.
pub(super) enum Measured {
    Reported(TokenUsage),
    Unreported { said_chars: usize, thought_chars: usize },
}

/// One provider attempt: consumes the stream, batches deltas, records parts and tool calls as they complete, and
/// starts each tool call at once.
pub(super) struct TurnStream<'a> {
    services: &'a Arc<Services>,
    turn: &'a Turn,
    activity: &'a Activity,
    limits: output::Limits,
    /// The turn's permission rules from config and its agent; shared by the turn's tool calls.
    permissions: Arc<approval::TurnRules>,
    /// The running agent's settings: the tools it is not offered are refused like unknown ones.
    agent: Option<Arc<crate::config::AgentSettings>>,
    sandbox: Arc<crate::sandbox::Policy>,
    calls: usize,
    /// The keel ids of the calls whose input is streaming, by the provider's id: deltas arrive before the call.
    open_calls: HashMap<String, String>,
    tool_cancel: CancellationToken,
    cwd: std::path::PathBuf,
    text: Option<OpenPart>,
    reasoning: Option<OpenPart>,
    pub(super) tools: JoinSet<()>,
    /// Fired once the attempt's end is recorded; tool calls ask for approval only after it.
    pub(super) answered: CancellationToken,
    pub(super) called: bool,
    pub(super) produced_output: bool,
    usage: Option<TokenUsage>,
    /// Characters of text and tool calls the model wrote, then of its reasoning: for an estimate of usage.
    said_chars: usize,
    thought_chars: usize,
    finish_reason: Option<String>,
}

struct OpenPart {
    part_id: String,
    text: String,
    pending: String,
    last_sent: Instant,
    signature: Option<String>,
}

impl OpenPart {
    fn new() -> Self {
        Self {
            part_id: id("prt"),
            text: String::new(),
            pending: String::new(),
            last_sent: Instant::now(),
            signature: None,
        }
    }
}

impl<'a> TurnStream<'a> {
    pub(super) fn new(
        services: &'a Arc<Services>,
        turn: &'a Turn,
        activity: &'a Activity,
        tool_cancel: CancellationToken,
        cwd: std::path::PathBuf,
        config: &crate::config::Config,
    ) -> Self {
        Self {
            services,
            turn,
            activity,
            limits: output_limits(config),
            permissions: Arc::new(approval::TurnRules {
                config: config.permissions.clone(),
                agent: config.agents.get(&activity.agent).map(|a| a.permissions.clone()).unwrap_or_default(),
            }),
            agent: config.agents.get(&activity.agent).cloned().map(Arc::new),
            sandbox: Arc::new(crate::sandbox::Policy::for_agent(config, &activity.agent, &cwd, &services.paths)),
            calls: 0,
            open_calls: HashMap::new(),
            tool_cancel,
            cwd,
            text: None,
            reasoning: None,
            tools: JoinSet::new(),
            answered: CancellationToken::new(),
            called: false,
            produced_output: false,
            usage: None,
            said_chars: 0,
            thought_chars: 0,
            finish_reason: None,
        }
    }

    pub(super) async fn run(
        &mut self,
        provider: &dyn crate::provider::Provider,
        request: &Request,
        cancel: &CancellationToken,
    ) -> StreamResult {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stream = provider.stream(request, tx);
        tokio::pin!(stream);
        let mut outcome: Option<Result<(), ProviderError>> = None;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.tool_cancel.cancel();
                    return StreamResult::Interrupted;
                }
                result = &mut stream, if outcome.is_none() => outcome = Some(result),
                next = rx.recv() => match next {
                    Some(event) => {
                        if let Err(e) = self.on_event(event) {
                            return StreamResult::Failed(ProviderError::Malformed(e.to_string()));
                        }
                    }
                    None => break,
                },
            }
        }
        let result = match outcome {
            Some(result) => result,
            None => (&mut stream).await,
        };
        match result {
            Ok(()) => StreamResult::Finished {
                finish_reason: self.finish_reason.clone().unwrap_or_else(|| "stop".into()),
                usage: match self.usage {
                    Some(usage) => Measured::Reported(usage),
                    None => Measured::Unreported { said_chars: self.said_chars, thought_chars: self.thought_chars },
                },
            },
            Err(e) => StreamResult::Failed(e),
        }
    }

    fn on_event(&mut self, streamed: StreamEvent) -> Result<(), Error> {
        match streamed {
            StreamEvent::TextDelta(delta) => {
                self.produced_output = true;
                self.said_chars += delta.len();
                self.push_delta(DeltaKind::Text, delta)?;
            }
            StreamEvent::ReasoningDelta(delta) => {
                self.produced_output = true;
                self.thought_chars += delta.len();
                self.push_delta(DeltaKind::Reasoning, delta)?;
            }
            StreamEvent::ReasoningSignature(signature) => {
                // A sealed block may have no visible text (a provider that hides its thinking): it is kept anyway,
                // since the continuation needs it back.
                let mut part = self.reasoning.take().unwrap_or_else(OpenPart::new);
                part.signature = Some(signature);
                let completed = self.complete(part, DeltaKind::Reasoning)?;
                self.services.append_events(&self.turn.session_id, vec![completed])?;
            }
            StreamEvent::ToolInputDelta { call_id, delta } => {
                self.produced_output = true;
                let part_id = self.open_calls.entry(call_id).or_insert_with(|| id("call")).clone();
                self.send_delta(&part_id, DeltaKind::ToolInput, delta);
            }
            StreamEvent::ToolCall(mut call) => {
                self.produced_output = true;
                self.called = true;
                self.said_chars += call.name.len() + call.input.to_string().len();
                // Providers reuse ids across turns (and some send none), while clients key calls by id per
                // session: keel names the call itself and keeps the provider's id for replaying to it. Closing
                // the entry lets a later call that reuses the id in this turn get an id of its own.
                let provider_id = std::mem::take(&mut call.id);
                call.id = self.open_calls.remove(&provider_id).unwrap_or_else(|| id("call"));
                let mut events = self.flush_parts();
                events.push(event(EventBody::ToolCalled(ToolCalledData {
                    turn_id: self.turn.turn_id.clone(),
                    message_id: self.turn.message_id.clone(),
                    call_id: call.id.clone(),
                    provider_call_id: (!provider_id.is_empty()).then_some(provider_id),
                    tool: call.name.clone(),
                    input: call.input.clone(),
                }))?);
                self.services.append_events(&self.turn.session_id, events)?;
                self.start_tool(call)?;
            }
            StreamEvent::Usage(usage) => self.usage = Some(usage),
            StreamEvent::Finish(reason) => self.finish_reason = Some(reason),
        }
        Ok(())
    }

    fn push_delta(&mut self, kind: DeltaKind, delta: String) -> Result<(), Error> {
        // Text and reasoning alternate as separate parts; switching kind closes the other one.
        let other = if kind == DeltaKind::Text {
            self.reasoning.take().map(|p| (p, DeltaKind::Reasoning))
        } else {
            self.text.take().map(|p| (p, DeltaKind::Text))
        };
        if let Some((part, other_kind)) = other {
            let completed = self.complete(part, other_kind)?;
            self.services.append_events(&self.turn.session_id, vec![completed])?;
        }
        let slot = if kind == DeltaKind::Text { &mut self.text } else { &mut self.reasoning };
        let part = slot.get_or_insert_with(OpenPart::new);
        part.text.push_str(&delta);
        part.pending.push_str(&delta);
        if part.pending.len() >= DELTA_BYTES || part.last_sent.elapsed() >= DELTA_INTERVAL {
            let pending = std::mem::take(&mut part.pending);
            part.last_sent = Instant::now();
            let part_id = part.part_id.clone();
            self.send_delta(&part_id, kind, pending);
        }
        Ok(())
    }

    fn send_delta(&self, part_id: &str, kind: DeltaKind, text: String) {
        if text.is_empty() || self.services.deltas.receiver_count() == 0 {
            return;
        }
        let _ = self.services.deltas.send(Arc::new(Delta {
            session_id: self.turn.session_id.clone(),
            message_id: self.turn.message_id.clone(),
            part_id: part_id.to_owned(),
            kind,
            text,
        }));
    }

    fn complete(&self, mut part: OpenPart, kind: DeltaKind) -> Result<NewEvent, Error> {
        let pending = std::mem::take(&mut part.pending);
        self.send_delta(&part.part_id, kind, pending);
        let data = PartCompletedData {
            turn_id: self.turn.turn_id.clone(),
            message_id: self.turn.message_id.clone(),
            part_id: part.part_id,
            text: part.text,
            signature: part.signature,
        };
        event(if kind == DeltaKind::Text {
            EventBody::TextCompleted(data)
        } else {
            EventBody::ReasoningCompleted(data)
        })
    }

    /// The `*.completed` events of the parts still open, reasoning before text.
    pub(super) fn flush_parts(&mut self) -> Vec<NewEvent> {
        let mut events = Vec::new();
        if let Some(part) = self.reasoning.take()
            && let Ok(e) = self.complete(part, DeltaKind::Reasoning)
        {
            events.push(e);
        }
        if let Some(part) = self.text.take()
            && let Ok(e) = self.complete(part, DeltaKind::Text)
        {
            events.push(e);
        }
        events
    }

    /// Starts a recorded call at once: permission gate (and approval), then the tool, then its settlement.
    fn start_tool(&mut self, call: ToolCall) -> Result<(), Error> {
        self.calls += 1;
        if self.calls > self.services.settings.max_tool_calls_per_turn {
            let error = format!(
                "too many tool calls in one turn (the limit is {}); make fewer calls at a time",
                self.services.settings.max_tool_calls_per_turn
            );
            return self.services.append_events(
                &self.turn.session_id,
                vec![event(EventBody::ToolFailed(ToolFailedData { call_id: call.id, error }))?],
            );
        }
        let repeated = {
            let key = format!("{}\u{0}{}", call.name, call.input);
            let mut recent = self.activity.recent.lock();
            let repeated = recent.len() >= 2 && recent[recent.len() - 2..].iter().all(|k| *k == key);
            recent.push(key);
            let excess = recent.len().saturating_sub(3);
            recent.drain(..excess);
            repeated
        };
        let services = Arc::clone(self.services);
        let session_id = self.turn.session_id.clone();
        let limits = self.limits;
        let permissions = Arc::clone(&self.permissions);
        let agent = self.agent.clone();
        let answered = self.answered.clone();
        let ctx = ToolContext {
            session_id: session_id.clone(),
            call_id: call.id.clone(),
            cwd: self.cwd.clone(),
            output_dir: services.output_dir(&session_id),
            cancel: self.tool_cancel.child_token(),
            sandbox: Arc::clone(&self.sandbox),
        };
        self.tools.spawn(async move {
            let mut call = call;
            let call_id = call.id.clone();
            let offered = crate::agent::offers(agent.as_deref(), &call.name);
            let Some(tool) = services.tools.get_for(&session_id, &call.name).filter(|_| offered) else {
                let error = format!("unknown tool {:?}", call.name);
                let failed = event(EventBody::ToolFailed(ToolFailedData { call_id, error }));
                if let Err(e) = failed.and_then(|e| services.append_events(&session_id, vec![e])) {
                    tracing::error!(session = %session_id, "recording a tool result failed: {e}");
                }
                return;
            };
            // Plugins see the call first: the input they leave is what the rules judge and the tool runs.
            let mut hooked = Vec::new();
            let before = services
                .plugins
                .tool_before(&session_id, &call_id, &call.name, std::mem::take(&mut call.input), &mut hooked)
                .await;
            record(&services, &session_id, std::mem::take(&mut hooked));
            let input = match before {
                Ok(input) => input,
                Err(reason) => {
                    let refused = event(EventBody::ToolFailed(ToolFailedData { call_id, error: reason }));
                    if let Err(e) = refused.and_then(|e| services.append_events(&session_id, vec![e])) {
                        tracing::error!(session = %session_id, "recording a tool result failed: {e}");
                    }
                    return;
                }
            };
            // A skill loaded is a fact of the session of its own, beside the call's result.
            let skill = (call.name == "skill").then(|| input["name"].as_str().map(str::to_owned)).flatten();
            let after = services.plugins.has(Hook::ToolAfter).then(|| input.clone());
            // Decoded once: the permission check and the run read the same input.
            let input = tool.decode(input);
            let gate =
                approval::authorize(&services, &*tool, &call, &input, &ctx, repeated, &permissions, &answered).await;
            let settled = match gate {
                Ok(Gate::Run) => {
                    let started = event(EventBody::ToolStarted(ToolStartedData { call_id: call_id.clone() }));
                    if let Ok(started) = started {
                        let _ = services.append_events(&session_id, vec![started]);
                    }
                    let mut result = tool.start(input, ctx.clone()).await;
                    if let (Some(input), Ok(out)) = (&after, &mut result) {
                        let output = std::mem::take(&mut out.output);
                        out.output = services
                            .plugins
                            .tool_after(&session_id, &call_id, &call.name, input, output, &mut hooked)
                            .await;
                    }
                    let limits = if tool.pages_itself() { output::Limits::UNBOUNDED } else { limits };
                    settlement(call_id, result, limits, &ctx.output_dir)
                }
                Ok(Gate::Refuse(error)) => event(EventBody::ToolFailed(ToolFailedData { call_id, error })),
                // Left unsettled on purpose: its approval outlives this engine.
                Ok(Gate::Suspended) => return,
                Ok(Gate::Interrupted) => {
                    event(EventBody::ToolFailed(ToolFailedData { call_id, error: "interrupted".into() }))
                }
                Err(e) => event(EventBody::ToolFailed(ToolFailedData { call_id, error: e.to_string() })),
            };
            let loaded = |settled: NewEvent| -> Result<Vec<NewEvent>, Error> {
                let mut events = hooked.into_iter().map(event).collect::<Result<Vec<_>, _>>()?;
                events.push(settled);
                if let (Some(name), Some(EventKind::ToolCompleted)) = (skill, events.last().map(NewEvent::kind)) {
                    events.push(event(EventBody::SkillLoaded(SkillLoadedData { call_id: call.id.clone(), name }))?);
                }
                Ok(events)
            };
            if let Err(e) = settled.and_then(loaded).and_then(|events| services.append_events(&session_id, events)) {
                tracing::error!(session = %session_id, "recording a tool result failed: {e}");
            }
        });
        Ok(())
    }
}

/// Appends what plugins' hooks did to a call; losing that note is no reason to fail the call.
fn record(services: &Services, session_id: &str, hooked: Vec<EventBody>) {
    if hooked.is_empty() {
        return;
    }
    let events = hooked.into_iter().map(event).collect::<Result<Vec<_>, _>>();
    if let Err(e) = events.and_then(|events| services.append_events(session_id, events)) {
        tracing::error!(session = %session_id, "recording a plugin's hook failed: {e}");
    }
}
