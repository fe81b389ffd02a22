//! The agent loop of one session: promote input, stream one provider turn at a time, run the tool calls it makes,
//! and record every step as an event. Only the session's drain (see `coordinator`) calls into this module.

mod recover;
mod stream;
mod turn;

use std::sync::Arc;

use keel_protocol::catalogue::EventBody;
use keel_protocol::compaction::CompactionReason;
use keel_protocol::input::{ContentPart, Delivery, InputKind};
use keel_protocol::session::SessionStatus;
use keel_protocol::turn::{
    ActivityClosedData, ActivityOpenedData, ActivitySuspendedData, ActivityTrigger, CloseReason, InputPromotedData,
    QueueData, StatusData, ToolCompletedData, ToolFailedData,
};
use tokio_util::sync::CancellationToken;

use super::compaction::{self, Compacted, CompactionError, Target};
use super::title::{self, Titling};
use super::{Error, Services, event};
use crate::store::{NewEvent, SessionRow, inputs};
use crate::tool::{ToolError, ToolOutput, output};
use recover::{Recovered, recover};
use turn::{Step, TurnOutcome, request_shape, run_turn};

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

/// Runs the session until it has no eligible work, until `cancel` (an interrupt), or until the engine shuts down
/// (the activity is suspended at a safe point). The caller holds the session's lease. An internal failure (the
/// database, say) closes the open activity as failed, so that nobody waits for it forever; a lost lease writes
/// nothing more.
pub async fn drain(
    services: &Arc<Services>,
    session_id: &str,
    mode: Mode,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    let result = drain_inner(services, session_id, mode, cancel).await;
    if let Err(e) = &result
        && !matches!(e, Error::Store(crate::store::Error::LeaseLost(_)))
        && let Ok(Some(session)) = services.store.session(session_id)
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
            let _ = services.append_events(session_id, events);
        }
    }
    result
}

async fn drain_inner(
    services: &Arc<Services>,
    session_id: &str,
    mut mode: Mode,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    match recover(services, session_id, cancel).await? {
        Recovered::Waiting => return Ok(()),
        Recovered::Continue(activity) => {
            if activity_loop(services, &activity, None, cancel).await? != Ended::Closed(CloseReason::Completed) {
                return Ok(());
            }
        }
        Recovered::Nothing => {}
    }
    loop {
        if cancel.is_cancelled() || services.shutdown.is_cancelled() {
            return Ok(());
        }
        let Some(session) = services.store.session(session_id)? else { return Ok(()) };
        let pending = services.store.query(|c| inputs::pending(c, session_id))?;
        let steers: Vec<_> = pending.iter().filter(|i| i.delivery == Delivery::Steer).cloned().collect();
        let queue_open = !session.queue_paused || mode == Mode::Run;
        let head = pending.iter().find(|i| i.delivery == Delivery::Queue).filter(|_| queue_open).cloned();
        let (trigger, promote) = match (steers.is_empty(), head) {
            (false, _) => (ActivityTrigger::Steer, steers),
            (true, Some(head)) if head.kind == InputKind::Compact => (ActivityTrigger::Compact, vec![head]),
            (true, Some(head)) => (ActivityTrigger::Queue, vec![head]),
            (true, None) if mode == Mode::Run => (ActivityTrigger::Resume, Vec::new()),
            (true, None) => return Ok(()),
        };
        let mut opening = Vec::new();
        if session.queue_paused && mode == Mode::Run {
            opening.push(event(EventBody::QueueResumed(QueueData {}))?);
        }
        mode = Mode::Wake;
        let ended = run_activity(services, &session, trigger, promote, opening, cancel).await?;
        if matches!(ended, Ended::Closed(CloseReason::Interrupted) | Ended::Suspended) {
            return Ok(());
        }
    }
}

/// How an activity loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Closed(CloseReason),
    /// The engine is shutting down; the activity stays open for the next engine.
    Suspended,
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

pub(super) fn output_limits(config: &crate::config::Config) -> output::Limits {
    let defaults = output::Limits::default();
    let settings = config.tool_output.as_ref();
    output::Limits {
        max_lines: settings.and_then(|s| s.max_lines).map_or(defaults.max_lines, |n| n as usize),
        max_bytes: settings.and_then(|s| s.max_bytes).map_or(defaults.max_bytes, |n| n as usize),
    }
}

/// What the activity runs with, fixed when it opens (config is re-read per turn).
pub(super) struct Activity {
    id: String,
    session: SessionRow,
    agent: String,
    model: Option<String>,
    step_limit: u32,
    /// The last tool calls (name and input), to notice a model repeating itself.
    recent: parking_lot::Mutex<Vec<String>>,
    /// A `session/compact` item: the activity compacts and makes no turn.
    compact: bool,
}

impl Activity {
    /// An activity taken over from a stopped engine: its agent from the session, a fresh step allowance.
    fn resumed(services: &Services, session: SessionRow, id: String, compact: bool) -> Self {
        let config = services.config(Some(&session.cwd));
        let agent = session.agent.clone();
        Self { id, step_limit: config.steps(&agent), agent, model: None, session, recent: Default::default(), compact }
    }
}

async fn run_activity(
    services: &Arc<Services>,
    session: &SessionRow,
    trigger: ActivityTrigger,
    promote: Vec<inputs::InputRow>,
    mut opening: Vec<NewEvent>,
    cancel: &CancellationToken,
) -> Result<Ended, Error> {
    let config = services.config(Some(&session.cwd));
    let agent = promote.iter().find_map(|i| i.agent.clone()).unwrap_or_else(|| session.agent.clone());
    let model = promote.iter().find_map(|i| i.model.clone());
    let activity = Activity {
        id: id("act"),
        session: session.clone(),
        step_limit: config.steps(&agent),
        agent,
        model,
        recent: Default::default(),
        compact: trigger == ActivityTrigger::Compact,
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
    let naming = match promote.first() {
        Some(input) if input.kind == InputKind::Prompt => {
            let prompt: Vec<ContentPart> = serde_json::from_str(&input.content).unwrap_or_default();
            title::naming(services, session, &prompt)
        }
        _ => None,
    };
    let (now, by_model) = match naming {
        Some(title::Naming::Now(title)) => (Some(title), None),
        Some(title::Naming::ByModel { text, resolved }) => (None, Some((text, resolved))),
        None => (None, None),
    };
    // A title from the prompt's words joins the opening, in its transaction: no append of its own.
    services.append_decided(&session.id, |tx| {
        let titled = match now {
            Some(title) => title::titled(tx, &session.id, title)?,
            None => None,
        };
        Ok(opening.into_iter().chain(titled).collect())
    })?;
    let titling = by_model.map(|(text, resolved)| title::ask(services, &session.id, text, resolved));
    activity_loop(services, &activity, titling, cancel).await
}

/// Runs the activity's steps and records how it ended; a title being written is part of the activity.
async fn activity_loop(
    services: &Arc<Services>,
    activity: &Activity,
    titling: Option<Titling>,
    cancel: &CancellationToken,
) -> Result<Ended, Error> {
    let end = steps(services, activity, cancel).await;
    if let Some(titling) = titling {
        titling.finish(cancel, &services.shutdown).await;
    }
    match end? {
        End::Close(reason, error) => close(services, activity, reason, error),
        End::Suspend => suspend(services, activity),
    }
}

/// How the steps of an activity ended, before it is recorded.
enum End {
    Close(CloseReason, Option<String>),
    /// The engine is shutting down at a safe point.
    Suspend,
}

/// Turns until the activity settles (completed, interrupted, failed or out of steps) or the engine shuts down.
async fn steps(services: &Arc<Services>, activity: &Activity, cancel: &CancellationToken) -> Result<End, Error> {
    let session = &activity.session;
    if activity.compact {
        let step = Step::read(services, activity);
        let (reason, error) = match compact_context(services, activity, &step, CompactionReason::Manual, cancel).await?
        {
            Some(Compacted::Failed(e)) => (CloseReason::Failed, Some(e.to_string())),
            Some(Compacted::Interrupted) if services.shutdown.is_cancelled() => return Ok(End::Suspend),
            Some(Compacted::Interrupted) => (CloseReason::Interrupted, None),
            Some(Compacted::Done) | None => (CloseReason::Completed, None),
        };
        return Ok(End::Close(reason, error));
    }
    let mut steps = 0;
    // The step whose request overflowed runs again, once, after its compaction.
    let mut overflowed = false;
    let (reason, error) = loop {
        if steps == activity.step_limit && !overflowed {
            break (CloseReason::TurnLimit, Some(format!("stopped after {} provider turns", activity.step_limit)));
        }
        // Between turns is a safe point: every step so far has a recorded outcome.
        if services.shutdown.is_cancelled() {
            return Ok(End::Suspend);
        }
        let step = Step::read(services, activity);
        let mut outcome = None;
        if !overflowed {
            steps += 1;
            // A failed automatic compaction leaves the request to the provider, whose overflow says the rest.
            if let Some(Compacted::Interrupted) =
                compact_context(services, activity, &step, CompactionReason::Auto, cancel).await?
            {
                outcome = Some(TurnOutcome::Interrupted);
            }
        }
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => run_turn(services, activity, &step, cancel, !overflowed).await?,
        };
        overflowed = false;
        let outcome = match outcome {
            TurnOutcome::Overflow(message) => {
                match compact_context(services, activity, &step, CompactionReason::Overflow, cancel).await? {
                    Some(Compacted::Done) => {
                        overflowed = true;
                        continue;
                    }
                    Some(Compacted::Interrupted) => TurnOutcome::Interrupted,
                    Some(Compacted::Failed(e)) => TurnOutcome::Failed(format!("{message}; compaction failed: {e}")),
                    None => TurnOutcome::Failed(message),
                }
            }
            outcome => outcome,
        };
        if let TurnOutcome::Interrupted = outcome {
            if services.shutdown.is_cancelled() {
                return Ok(End::Suspend);
            }
            break (CloseReason::Interrupted, None);
        }
        if let TurnOutcome::Failed(message) = outcome {
            break (CloseReason::Failed, Some(message));
        }
        // Interrupted while the turn's tools settled: no steer joins an activity that is ending.
        if cancel.is_cancelled() {
            if services.shutdown.is_cancelled() {
                return Ok(End::Suspend);
            }
            break (CloseReason::Interrupted, None);
        }
        // The safe boundary: steers admitted meanwhile join now, all together, and renew the step allowance.
        let steers: Vec<_> = services
            .store
            .query(|c| inputs::pending(c, &session.id))?
            .into_iter()
            .filter(|i| i.delivery == Delivery::Steer)
            .collect();
        if !steers.is_empty() {
            services.append_events(&session.id, vec![promotion(&activity.id, &steers)?])?;
            steps = 0;
            continue;
        }
        if let TurnOutcome::Done = outcome {
            break (CloseReason::Completed, None);
        }
    };
    Ok(End::Close(reason, error))
}

/// Compacts the session's context: before a turn only when its estimate passes the usable window (`Auto`), at
/// once otherwise. `None` when nothing ran: not needed, turned off, or (for `Auto`) no model to measure against,
/// which the turn itself reports.
async fn compact_context(
    services: &Arc<Services>,
    activity: &Activity,
    step: &Step,
    reason: CompactionReason,
    cancel: &CancellationToken,
) -> Result<Option<Compacted>, Error> {
    let config = &step.config;
    let settings = compaction::settings(config);
    if reason != CompactionReason::Manual && settings.auto == Some(false) {
        return Ok(None);
    }
    let resolved = match &step.resolved {
        Ok(resolved) => resolved,
        Err(_) if reason == CompactionReason::Auto => return Ok(None),
        Err(e) => return Ok(Some(Compacted::Failed(CompactionError::Provider(e.clone())))),
    };
    let (request, _) = request_shape(services, activity, config, resolved);
    if reason == CompactionReason::Auto {
        let budget = compaction::Budget::of(&resolved.spec, &settings);
        let overhead = compaction::overhead_chars(&request);
        if !compaction::required(&services.store, &activity.session.id, overhead, budget)? {
            return Ok(None);
        }
    }
    // A cheaper model may write the summary; one that does not resolve leaves it to the session's.
    let summariser = settings.model.as_deref().and_then(|m| services.providers.resolve(config, m).ok());
    let cwd = std::path::PathBuf::from(&activity.session.cwd);
    let target = Target {
        session_id: &activity.session.id,
        cwd: &cwd,
        resolved,
        summariser: summariser.as_ref().unwrap_or(resolved),
        request: &request,
    };
    Ok(Some(compaction::compact(services, &target, reason, &settings, cancel).await?))
}

/// Closes the activity and sets the session's status after it.
fn close(services: &Services, activity: &Activity, reason: CloseReason, error: Option<String>) -> Result<Ended, Error> {
    let status = if reason == CloseReason::Failed { SessionStatus::Failed } else { SessionStatus::Idle };
    services.append_events(
        &activity.session.id,
        vec![
            event(EventBody::ActivityClosed(ActivityClosedData { activity_id: activity.id.clone(), reason, error }))?,
            event(EventBody::SessionStatus(StatusData { status }))?,
        ],
    )?;
    Ok(Ended::Closed(reason))
}

/// Records that the activity stopped at a safe point for a shutdown; the next engine resumes it.
fn suspend(services: &Services, activity: &Activity) -> Result<Ended, Error> {
    services.append_events(
        &activity.session.id,
        vec![
            event(EventBody::ActivitySuspended(ActivitySuspendedData { activity_id: activity.id.clone() }))?,
            event(EventBody::SessionStatus(StatusData { status: SessionStatus::Suspended }))?,
        ],
    )?;
    Ok(Ended::Suspended)
}

fn promotion(activity_id: &str, inputs: &[inputs::InputRow]) -> Result<NewEvent, Error> {
    event(EventBody::InputPromoted(InputPromotedData {
        input_ids: inputs.iter().map(|i| i.input_id.clone()).collect(),
        activity_id: activity_id.to_owned(),
        message_id: id("msg"),
    }))
}
