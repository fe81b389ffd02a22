//! The agent loop of one session: promote input, stream one provider turn at a time, run the tool calls it makes,
//! and record every step as an event. Only the session's drain (see `coordinator`) calls into this module.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_protocol::approval::Resolved;
use keel_protocol::catalogue::EventBody;
use keel_protocol::input::Delivery;
use keel_protocol::session::{SessionStatus, Usage};
use keel_protocol::turn::{
    ActivityClosedData, ActivityOpenedData, ActivityTrigger, CloseReason, DeltaKind, InputPromotedData,
    PartCompletedData, ProviderFailure, QueueData, RetryScheduledData, StatusData, ToolCalledData, ToolCompletedData,
    ToolFailedData, ToolStartedData, TurnCompletedData, TurnFailedData, TurnStartedData,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::approval::{self, Gate};
use super::{Delta, Error, context, event};
use crate::engine::Engine;
use crate::provider::registry::Registry;
use crate::provider::{ProviderError, Request, StreamEvent, TokenUsage, ToolCall};
use crate::store::approvals::ApprovalState;
use crate::store::{self, NewEvent, SessionRow, approvals, inputs, transcript};
use crate::tool::{ToolContext, ToolError, ToolOutput, output};

/// Streamed fragments are sent at most this often per part, or when this many bytes wait.
const DELTA_INTERVAL: Duration = Duration::from_millis(25);
const DELTA_BYTES: usize = 2048;

fn id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Durable work was recorded: run only if there is eligible input.
    Wake,
    /// An explicit resume: at least one provider attempt, and a paused queue restarts.
    Run,
}

/// Runs the session until it has no eligible work, or until `cancel` (an interrupt). An internal failure (the
/// database, say) closes the open activity as failed, so that nobody waits for it forever.
pub async fn drain(
    engine: &Arc<Engine>,
    session_id: &str,
    mode: Mode,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    let result = drain_inner(engine, session_id, mode, cancel).await;
    if let Err(e) = &result
        && let Ok(Some(session)) = engine.store.session(session_id)
        && let Some(activity_id) = session.active_activity
    {
        let closing = [
            event(EventBody::ActivityClosed(ActivityClosedData {
                activity_id,
                reason: CloseReason::Failed,
                error: Some(e.to_string()),
            })),
            event(EventBody::SessionStatus(StatusData { status: SessionStatus::Failed })),
        ];
        if let Ok(events) = closing.into_iter().collect::<Result<Vec<_>, _>>() {
            let _ = engine.append_events(session_id, events);
        }
    }
    result
}

async fn drain_inner(
    engine: &Arc<Engine>,
    session_id: &str,
    mut mode: Mode,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    match recover(engine, session_id, cancel).await? {
        Recovered::Waiting => return Ok(()),
        Recovered::Continue(activity) => {
            if activity_loop(engine, &activity, cancel).await? == CloseReason::Interrupted {
                return Ok(());
            }
        }
        Recovered::Nothing => {}
    }
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let Some(session) = engine.store.session(session_id)? else { return Ok(()) };
        let pending = engine.store.query(|c| inputs::pending(c, session_id))?;
        let steers: Vec<_> = pending.iter().filter(|i| i.delivery == Delivery::Steer).cloned().collect();
        let queue_open = !session.queue_paused || mode == Mode::Run;
        let head = pending.iter().find(|i| i.delivery == Delivery::Queue).filter(|_| queue_open).cloned();
        let (trigger, promote) = match (steers.is_empty(), head) {
            (false, _) => (ActivityTrigger::Steer, steers),
            (true, Some(head)) => (ActivityTrigger::Queue, vec![head]),
            (true, None) if mode == Mode::Run => (ActivityTrigger::Resume, Vec::new()),
            (true, None) => return Ok(()),
        };
        let mut opening = Vec::new();
        if session.queue_paused && mode == Mode::Run {
            opening.push(event(EventBody::QueueResumed(QueueData {}))?);
        }
        mode = Mode::Wake;
        let reason = run_activity(engine, &session, trigger, promote, opening, cancel).await?;
        if reason == CloseReason::Interrupted {
            return Ok(());
        }
    }
}

enum Recovered {
    Nothing,
    /// A tool call of the open activity still waits for an approval: nothing runs until it is answered.
    Waiting,
    /// Approvals answered after a restart settled the open activity's calls: it goes on.
    Continue(Box<Activity>),
}

/// Settles what a process that stopped mid-activity left behind. A tool call whose approval was answered runs now
/// (or fails, if rejected) and the activity continues; one still waiting for its approval keeps the activity open;
/// any other call that was running fails as interrupted and is never re-run, and the activity closes as failed.
async fn recover(engine: &Arc<Engine>, session_id: &str, cancel: &CancellationToken) -> Result<Recovered, Error> {
    let Some(session) = engine.store.session(session_id)? else { return Ok(Recovered::Nothing) };
    let unsettled = engine.store.query(|c| transcript::unsettled_tool_calls(c, session_id))?;
    let (mut waiting, mut answered) = (false, false);
    for (call_id, status) in unsettled {
        let approval = engine.store.query(|c| approvals::for_call(c, session_id, &call_id))?;
        // A call that had started may have done part of its work: it is never run twice.
        let approval = approval.filter(|_| status == "pending");
        match approval.as_ref().map(|a| (a.state, a.decision)) {
            Some((ApprovalState::Pending, _)) => waiting = true,
            Some((_, Some(decision @ (Resolved::Once | Resolved::Always | Resolved::Reject)))) => {
                answered = true;
                let resolution =
                    approval::Resolution { decision, message: approval.as_ref().and_then(|a| a.message.clone()) };
                match approval::gate_for(&resolution) {
                    Gate::Run => run_recovered_call(engine, &session, &call_id, cancel).await?,
                    Gate::Refuse(error) => engine.append_events(
                        session_id,
                        vec![event(EventBody::ToolFailed(ToolFailedData { call_id, error }))?],
                    )?,
                    Gate::Interrupted => {}
                }
            }
            _ => engine.append_events(
                session_id,
                vec![event(EventBody::ToolFailed(ToolFailedData {
                    call_id,
                    error: "interrupted: the engine stopped while the tool ran".into(),
                }))?],
            )?,
        }
    }
    if waiting {
        return Ok(Recovered::Waiting);
    }
    let Some(activity_id) = session.active_activity.clone() else { return Ok(Recovered::Nothing) };
    if answered {
        let config = engine.config(Some(&session.cwd));
        let agent = session.agent.clone();
        return Ok(Recovered::Continue(Box::new(Activity {
            id: activity_id,
            step_limit: config.steps(&agent),
            agent,
            model: None,
            session,
            recent: Default::default(),
        })));
    }
    engine.append_events(
        session_id,
        vec![
            event(EventBody::ActivityClosed(ActivityClosedData {
                activity_id,
                reason: CloseReason::Failed,
                error: Some("the engine stopped while this activity ran".into()),
            }))?,
            event(EventBody::SessionStatus(StatusData { status: SessionStatus::Idle }))?,
        ],
    )?;
    Ok(Recovered::Nothing)
}

/// Runs a call whose approval was answered while no process waited for it.
async fn run_recovered_call(
    engine: &Arc<Engine>,
    session: &SessionRow,
    call_id: &str,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    let Some((tool, input)) = engine.store.query(|c| transcript::tool_call(c, &session.id, call_id))? else {
        return Ok(());
    };
    let ctx = ToolContext {
        session_id: session.id.clone(),
        call_id: call_id.to_owned(),
        cwd: std::path::PathBuf::from(&session.cwd),
        output_dir: engine.output_dir(&session.id),
        cancel: cancel.child_token(),
    };
    let limits = output_limits(&engine.config(Some(&session.cwd)));
    engine.append_events(
        &session.id,
        vec![event(EventBody::ToolStarted(ToolStartedData { call_id: call_id.to_owned() }))?],
    )?;
    let result = engine.tools.run(&tool, input, ctx.clone()).await;
    engine.append_events(&session.id, vec![settlement(call_id.to_owned(), result, limits, &ctx.output_dir)?])
}

/// The event that settles a call with its result, large outputs saved for paging.
fn settlement(
    call_id: String,
    result: Result<ToolOutput, ToolError>,
    limits: output::Limits,
    dir: &std::path::Path,
) -> Result<NewEvent, Error> {
    match result {
        Ok(out) => {
            let (output, cut) = output::fit(out.output, limits, dir);
            event(EventBody::ToolCompleted(ToolCompletedData { call_id, output, truncated: out.truncated || cut }))
        }
        Err(ToolError::Interrupted) => {
            event(EventBody::ToolFailed(ToolFailedData { call_id, error: "interrupted".into() }))
        }
        Err(e) => event(EventBody::ToolFailed(ToolFailedData { call_id, error: e.to_string() })),
    }
}

fn output_limits(config: &crate::config::Config) -> output::Limits {
    let defaults = output::Limits::default();
    let settings = config.tool_output.as_ref();
    output::Limits {
        max_lines: settings.and_then(|s| s.max_lines).map_or(defaults.max_lines, |n| n as usize),
        max_bytes: settings.and_then(|s| s.max_bytes).map_or(defaults.max_bytes, |n| n as usize),
    }
}

/// What the activity runs with, fixed when it opens (config is re-read per turn).
struct Activity {
    id: String,
    session: SessionRow,
    agent: String,
    model: Option<String>,
    step_limit: u32,
    /// The last tool calls (name and input), to notice a model repeating itself.
    recent: parking_lot::Mutex<Vec<String>>,
}

async fn run_activity(
    engine: &Arc<Engine>,
    session: &SessionRow,
    trigger: ActivityTrigger,
    promote: Vec<inputs::InputRow>,
    mut opening: Vec<NewEvent>,
    cancel: &CancellationToken,
) -> Result<CloseReason, Error> {
    let config = engine.config(Some(&session.cwd));
    let agent = promote.iter().find_map(|i| i.agent.clone()).unwrap_or_else(|| session.agent.clone());
    let model = promote.iter().find_map(|i| i.model.clone());
    let activity = Activity {
        id: id("act"),
        session: session.clone(),
        step_limit: config.steps(&agent),
        agent,
        model,
        recent: Default::default(),
    };
    opening.push(event(EventBody::ActivityOpened(ActivityOpenedData {
        activity_id: activity.id.clone(),
        trigger,
        step_limit: activity.step_limit,
    }))?);
    if !promote.is_empty() {
        opening.push(promotion(&activity.id, &promote)?);
    }
    opening.push(event(EventBody::SessionStatus(StatusData { status: SessionStatus::Running }))?);
    engine.append_events(&session.id, opening)?;
    activity_loop(engine, &activity, cancel).await
}

/// Turns until the activity settles: completed, interrupted, failed or out of steps.
async fn activity_loop(
    engine: &Arc<Engine>,
    activity: &Activity,
    cancel: &CancellationToken,
) -> Result<CloseReason, Error> {
    let session = &activity.session;
    let mut steps = 0;
    let (reason, error) = loop {
        if steps == activity.step_limit {
            break (CloseReason::TurnLimit, Some(format!("stopped after {} provider turns", activity.step_limit)));
        }
        steps += 1;
        let outcome = run_turn(engine, activity, cancel).await?;
        if let TurnOutcome::Interrupted = outcome {
            break (CloseReason::Interrupted, None);
        }
        if let TurnOutcome::Failed(message) = outcome {
            break (CloseReason::Failed, Some(message));
        }
        // Interrupted while the turn's tools settled: no steer joins an activity that is ending.
        if cancel.is_cancelled() {
            break (CloseReason::Interrupted, None);
        }
        // The safe boundary: steers admitted meanwhile join now, all together, and renew the step allowance.
        let steers: Vec<_> = engine
            .store
            .query(|c| inputs::pending(c, &session.id))?
            .into_iter()
            .filter(|i| i.delivery == Delivery::Steer)
            .collect();
        if !steers.is_empty() {
            engine.append_events(&session.id, vec![promotion(&activity.id, &steers)?])?;
            steps = 0;
            continue;
        }
        if let TurnOutcome::Done = outcome {
            break (CloseReason::Completed, None);
        }
    };
    let status = if reason == CloseReason::Failed { SessionStatus::Failed } else { SessionStatus::Idle };
    engine.append_events(
        &session.id,
        vec![
            event(EventBody::ActivityClosed(ActivityClosedData { activity_id: activity.id.clone(), reason, error }))?,
            event(EventBody::SessionStatus(StatusData { status }))?,
        ],
    )?;
    Ok(reason)
}

fn promotion(activity_id: &str, inputs: &[inputs::InputRow]) -> Result<NewEvent, Error> {
    event(EventBody::InputPromoted(InputPromotedData {
        input_ids: inputs.iter().map(|i| i.input_id.clone()).collect(),
        activity_id: activity_id.to_owned(),
        message_id: id("msg"),
    }))
}

enum TurnOutcome {
    /// Tool calls ran; the model continues.
    Continue,
    Done,
    Failed(String),
    Interrupted,
}

fn failure(e: &ProviderError) -> ProviderFailure {
    ProviderFailure { kind: e.kind().into(), message: e.to_string(), status: e.status() }
}

async fn run_turn(engine: &Arc<Engine>, activity: &Activity, cancel: &CancellationToken) -> Result<TurnOutcome, Error> {
    let session_id = &activity.session.id;
    let config = engine.config(Some(&activity.session.cwd));
    let model = activity
        .model
        .clone()
        .or_else(|| Some(activity.session.model.clone()).filter(|m| !m.is_empty()))
        .or_else(|| config.agents.get(&activity.agent).and_then(|a| a.model.clone()))
        .unwrap_or_else(|| Registry::default_model(&config));
    let turn = Turn { turn_id: id("turn"), message_id: id("msg"), session_id: session_id.clone() };
    engine.append_events(
        session_id,
        vec![event(EventBody::TurnStarted(TurnStartedData {
            turn_id: turn.turn_id.clone(),
            activity_id: activity.id.clone(),
            message_id: turn.message_id.clone(),
            model: model.clone(),
            agent: activity.agent.clone(),
        }))?],
    )?;
    let resolved = match engine.providers.resolve(&config, &model) {
        Ok(resolved) => resolved,
        Err(e) => return turn.fail(engine, &e, false),
    };
    let cwd = std::path::PathBuf::from(&activity.session.cwd);
    let parts = engine.store.query(|c| transcript::parts_after(c, session_id, 0, usize::MAX))?;
    let request = Request {
        model: resolved.spec.model().to_owned(),
        system: context::system_prompt(&config, &activity.agent, &cwd),
        messages: context::history(&parts, &cwd),
        tools: engine.tools.specs(),
        max_output_tokens: resolved.spec.max_output_tokens.min(32_000),
        session_id: session_id.clone(),
    };

    let mut attempt = 0;
    loop {
        let mut stream = TurnStream::new(engine, &turn, activity, cancel.child_token(), cwd.clone(), &config);
        let result = stream.run(&*resolved.provider, &request, cancel).await;
        let flushed = stream.flush_parts();
        let called_tools = stream.called;
        let produced = stream.produced_output;
        let tools = stream.tools;
        engine.append_events(session_id, flushed)?;
        match result {
            StreamResult::Finished { finish_reason, usage } => {
                settle(tools).await;
                let usage_wire = Usage {
                    input_tokens: usage.input,
                    output_tokens: usage.output,
                    reasoning_tokens: usage.reasoning,
                    cache_read_tokens: usage.cache_read,
                    cache_write_tokens: usage.cache_write,
                    cost_usd: resolved.spec.cost_of(&usage),
                };
                engine.append_events(
                    session_id,
                    vec![event(EventBody::TurnCompleted(TurnCompletedData {
                        turn_id: turn.turn_id.clone(),
                        finish_reason,
                        cost_usd: usage_wire.cost_usd,
                        usage: usage_wire,
                    }))?],
                )?;
                return Ok(if called_tools { TurnOutcome::Continue } else { TurnOutcome::Done });
            }
            StreamResult::Interrupted => {
                settle(tools).await;
                engine.append_events(
                    session_id,
                    vec![event(EventBody::TurnFailed(TurnFailedData {
                        turn_id: turn.turn_id.clone(),
                        error: ProviderFailure {
                            kind: "interrupted".into(),
                            message: "interrupted".into(),
                            status: None,
                        },
                        retryable: false,
                    }))?],
                )?;
                return Ok(TurnOutcome::Interrupted);
            }
            StreamResult::Failed(e) => {
                settle(tools).await;
                // Once output was streamed the attempt's outcome is ambiguous: never retried automatically.
                let retry = e.is_transient() && !produced && attempt < engine.settings.max_retries;
                if !retry {
                    return turn.fail(engine, &e, e.is_transient());
                }
                attempt += 1;
                let delay = e.retry_after().unwrap_or_else(|| backoff(engine.settings.retry_base, attempt));
                engine.append_events(
                    session_id,
                    vec![
                        event(EventBody::RetryScheduled(RetryScheduledData {
                            turn_id: turn.turn_id.clone(),
                            attempt,
                            at: store::now_millis() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            error: failure(&e),
                        }))?,
                        event(EventBody::SessionStatus(StatusData { status: SessionStatus::Retrying }))?,
                    ],
                )?;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Ok(TurnOutcome::Interrupted),
                }
                engine.append_events(
                    session_id,
                    vec![event(EventBody::SessionStatus(StatusData { status: SessionStatus::Running }))?],
                )?;
            }
        }
    }
}

/// Jittered exponential backoff: base × 2^(attempt-1), ±25%, at most 30 s.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << attempt.saturating_sub(1).min(10)).min(Duration::from_secs(30));
    let jitter = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(attempt);
        (h.finish() % 500) as f64 / 1000.0 + 0.75
    };
    exp.mul_f64(jitter)
}

struct Turn {
    turn_id: String,
    message_id: String,
    session_id: String,
}

impl Turn {
    fn fail(&self, engine: &Engine, e: &ProviderError, retryable: bool) -> Result<TurnOutcome, Error> {
        engine.append_events(
            &self.session_id,
            vec![event(EventBody::TurnFailed(TurnFailedData {
                turn_id: self.turn_id.clone(),
                error: failure(e),
                retryable,
            }))?],
        )?;
        Ok(TurnOutcome::Failed(e.to_string()))
    }
}

async fn settle(mut tools: JoinSet<()>) {
    while tools.join_next().await.is_some() {}
}

enum StreamResult {
    Finished { finish_reason: String, usage: TokenUsage },
    Failed(ProviderError),
    Interrupted,
}

/// One provider attempt: consumes the stream, batches deltas, records parts and tool calls as they complete, and
/// starts each tool call at once.
struct TurnStream<'a> {
    engine: &'a Arc<Engine>,
    turn: &'a Turn,
    activity: &'a Activity,
    limits: output::Limits,
    /// The turn's permission rules from config; shared by the turn's tool calls.
    permissions: Arc<[crate::config::PermissionRule]>,
    calls: usize,
    tool_cancel: CancellationToken,
    cwd: std::path::PathBuf,
    text: Option<OpenPart>,
    reasoning: Option<OpenPart>,
    tools: JoinSet<()>,
    called: bool,
    produced_output: bool,
    usage: TokenUsage,
    finish_reason: Option<String>,
}

struct OpenPart {
    part_id: String,
    text: String,
    pending: String,
    last_sent: Instant,
}

impl<'a> TurnStream<'a> {
    fn new(
        engine: &'a Arc<Engine>,
        turn: &'a Turn,
        activity: &'a Activity,
        tool_cancel: CancellationToken,
        cwd: std::path::PathBuf,
        config: &crate::config::Config,
    ) -> Self {
        Self {
            engine,
            turn,
            activity,
            limits: output_limits(config),
            permissions: config.permissions.clone().into(),
            calls: 0,
            tool_cancel,
            cwd,
            text: None,
            reasoning: None,
            tools: JoinSet::new(),
            called: false,
            produced_output: false,
            usage: TokenUsage::default(),
            finish_reason: None,
        }
    }

    async fn run(
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
                usage: self.usage,
            },
            Err(e) => StreamResult::Failed(e),
        }
    }

    fn on_event(&mut self, streamed: StreamEvent) -> Result<(), Error> {
        match streamed {
            StreamEvent::TextDelta(delta) => {
                self.produced_output = true;
                self.push_delta(DeltaKind::Text, delta)?;
            }
            StreamEvent::ReasoningDelta(delta) => {
                self.produced_output = true;
                self.push_delta(DeltaKind::Reasoning, delta)?;
            }
            StreamEvent::ToolInputDelta { call_id, delta } => {
                self.produced_output = true;
                self.send_delta(&call_id, DeltaKind::ToolInput, delta);
            }
            StreamEvent::ToolCall(call) => {
                self.produced_output = true;
                self.called = true;
                let mut events = self.flush_parts();
                events.push(event(EventBody::ToolCalled(ToolCalledData {
                    turn_id: self.turn.turn_id.clone(),
                    message_id: self.turn.message_id.clone(),
                    call_id: call.id.clone(),
                    tool: call.name.clone(),
                    input: call.input.clone(),
                }))?);
                self.engine.append_events(&self.turn.session_id, events)?;
                self.start_tool(call)?;
            }
            StreamEvent::Usage(usage) => self.usage = usage,
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
            self.engine.append_events(&self.turn.session_id, vec![completed])?;
        }
        let slot = if kind == DeltaKind::Text { &mut self.text } else { &mut self.reasoning };
        let part = slot.get_or_insert_with(|| OpenPart {
            part_id: id("prt"),
            text: String::new(),
            pending: String::new(),
            last_sent: Instant::now(),
        });
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
        if text.is_empty() || self.engine.deltas.receiver_count() == 0 {
            return;
        }
        let _ = self.engine.deltas.send(Arc::new(Delta {
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
        };
        event(if kind == DeltaKind::Text {
            EventBody::TextCompleted(data)
        } else {
            EventBody::ReasoningCompleted(data)
        })
    }

    /// The `*.completed` events of the parts still open, reasoning before text.
    fn flush_parts(&mut self) -> Vec<NewEvent> {
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
        if self.calls > self.engine.settings.max_tool_calls_per_turn {
            let error = format!(
                "too many tool calls in one turn (the limit is {}); make fewer calls at a time",
                self.engine.settings.max_tool_calls_per_turn
            );
            return self.engine.append_events(
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
        let engine = Arc::clone(self.engine);
        let session_id = self.turn.session_id.clone();
        let limits = self.limits;
        let permissions = Arc::clone(&self.permissions);
        let ctx = ToolContext {
            session_id: session_id.clone(),
            call_id: call.id.clone(),
            cwd: self.cwd.clone(),
            output_dir: engine.output_dir(&session_id),
            cancel: self.tool_cancel.child_token(),
        };
        self.tools.spawn(async move {
            let call_id = call.id.clone();
            let gate = approval::authorize(&engine, &call, &ctx, repeated, &permissions).await;
            let settled = match gate {
                Ok(Gate::Run) => {
                    let started = event(EventBody::ToolStarted(ToolStartedData { call_id: call_id.clone() }));
                    if let Ok(started) = started {
                        let _ = engine.append_events(&session_id, vec![started]);
                    }
                    let result = engine.tools.run(&call.name, call.input, ctx.clone()).await;
                    let limits = if engine.tools.get(&call.name).is_some_and(|t| t.pages_itself()) {
                        output::Limits::UNBOUNDED
                    } else {
                        limits
                    };
                    settlement(call_id, result, limits, &ctx.output_dir)
                }
                Ok(Gate::Refuse(error)) => event(EventBody::ToolFailed(ToolFailedData { call_id, error })),
                Ok(Gate::Interrupted) => {
                    event(EventBody::ToolFailed(ToolFailedData { call_id, error: "interrupted".into() }))
                }
                Err(e) => event(EventBody::ToolFailed(ToolFailedData { call_id, error: e.to_string() })),
            };
            if let Err(e) = settled.and_then(|e| engine.append_events(&session_id, vec![e])) {
                tracing::error!(session = %session_id, "recording a tool result failed: {e}");
            }
        });
        Ok(())
    }
}
