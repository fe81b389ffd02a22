//! Taking over an activity that a stopped engine left open. Runs at the start of a drain, under the session's
//! lease, so that nobody else writes meanwhile: tool calls are settled first (an answered approval runs its call; a
//! call that had started fails as interrupted and is never run twice), then the activity's log decides
//! (`session::recovery::examine`): go on, close, or wait for `recovery/decide`.

use std::sync::Arc;

use keel_protocol::approval::Resolved;
use keel_protocol::catalogue::EventBody;
use keel_protocol::recovery::{RecoveryDecision, RecoveryReason, RecoveryRequiredData, RecoveryResolvedData};
use keel_protocol::session::SessionStatus;
use keel_protocol::turn::{
    ActivityClosedData, ActivityResumedData, ActivityTrigger, CloseReason, ProviderFailure, RetryScheduledData,
    StatusData, ToolFailedData, ToolStartedData, TurnFailedData,
};
use tokio_util::sync::CancellationToken;

use super::{Activity, output_limits, settlement};
use crate::session::approval::{self, Gate};
use crate::session::recovery::{self, OpenTurn, Situation};
use crate::session::{Error, Services, event};
use crate::store::approvals::{self, ApprovalState};
use crate::store::{NewEvent, SessionRow, transcript};
use crate::tool::ToolContext;

pub(super) enum Recovered {
    Nothing,
    /// The activity waits for a person: an approval, or a recovery decision.
    Waiting,
    /// The activity goes on with a new turn.
    Continue(Box<Activity>),
}

pub(super) async fn recover(
    services: &Arc<Services>,
    session_id: &str,
    cancel: &CancellationToken,
) -> Result<Recovered, Error> {
    let Some(session) = services.store.session(session_id)? else { return Ok(Recovered::Nothing) };
    let Some(activity_id) = session.active_activity.clone() else { return Ok(Recovered::Nothing) };
    if settle_tool_calls(services, &session, cancel).await? {
        if session.status != SessionStatus::WaitingApproval {
            services.append_events(session_id, vec![status(SessionStatus::WaitingApproval)?])?;
        }
        return Ok(Recovered::Waiting);
    }
    let bodies = services
        .store
        .activity_events(session_id, &activity_id)?
        .iter()
        .map(|e| e.body())
        .collect::<Result<Vec<_>, _>>()?;
    let close = |reason, error: Option<&str>, status_after| -> Result<Vec<NewEvent>, Error> {
        Ok(vec![
            event(EventBody::ActivityClosed(ActivityClosedData {
                activity_id: activity_id.clone(),
                reason,
                error: error.map(str::to_owned),
            }))?,
            status(status_after)?,
        ])
    };
    let (events, recovered) = match recovery::examine(&bodies) {
        Situation::Continue { after, open } => {
            let mut events = Vec::new();
            match open {
                Some(OpenTurn::Unsent(turn_id)) => events.push(turn_failed(
                    &turn_id,
                    recovery::NOT_SENT,
                    "the engine stopped before this request was sent",
                )?),
                Some(OpenTurn::Answered(data)) => events.push(event(EventBody::TurnCompleted(data))?),
                None => {}
            }
            events.push(event(EventBody::ActivityResumed(ActivityResumedData {
                activity_id: activity_id.clone(),
                after,
            }))?);
            events.push(status(SessionStatus::Running)?);
            let compact = bodies
                .iter()
                .any(|b| matches!(b, EventBody::ActivityOpened(d) if d.trigger == ActivityTrigger::Compact));
            let activity = Activity::resumed(services, session.clone(), activity_id.clone(), compact);
            (events, Recovered::Continue(Box::new(activity)))
        }
        Situation::Finished => (close(CloseReason::Completed, None, SessionStatus::Idle)?, Recovered::Nothing),
        Situation::Failed(error) => {
            (close(CloseReason::Failed, Some(&error), SessionStatus::Failed)?, Recovered::Nothing)
        }
        Situation::Interrupted => (close(CloseReason::Interrupted, None, SessionStatus::Idle)?, Recovered::Nothing),
        Situation::Abandoned => (
            close(CloseReason::Interrupted, Some("abandoned after the engine stopped"), SessionStatus::Idle)?,
            Recovered::Nothing,
        ),
        Situation::Unknown { asked: true, .. } => {
            let events = match session.status {
                SessionStatus::Recovering => Vec::new(),
                _ => vec![status(SessionStatus::Recovering)?],
            };
            (events, Recovered::Waiting)
        }
        Situation::Unknown { turn_id, reason, asked: false } => {
            return unknown_outcome(services, &session, &activity_id, &turn_id, reason, &bodies, cancel).await;
        }
    };
    services.append_events(session_id, events)?;
    Ok(recovered)
}

/// An attempt that may have reached the model. Config may let it be sent again by itself (the provider allows it,
/// every tool the turn called is idempotent, and the activity has retries left); otherwise the session waits for
/// `recovery/decide`.
async fn unknown_outcome(
    services: &Arc<Services>,
    session: &SessionRow,
    activity_id: &str,
    turn_id: &str,
    reason: RecoveryReason,
    bodies: &[EventBody],
    cancel: &CancellationToken,
) -> Result<Recovered, Error> {
    let message = match reason {
        RecoveryReason::AttemptDispatched => "the engine stopped after sending this request and before any answer",
        RecoveryReason::AttemptStreamed => "the engine stopped while the model was answering",
    };
    let mut events = vec![turn_failed(turn_id, recovery::UNKNOWN_OUTCOME, message)?];
    let config = services.config(Some(&session.cwd));
    let policy = config.recovery.clone().unwrap_or_default();
    let retried =
        bodies.iter().filter(|b| matches!(b, EventBody::RecoveryResolved(d) if d.by == recovery::BY_POLICY)).count()
            as u32;
    let provider_allows = bodies.iter().rev().find_map(|b| match b {
        EventBody::TurnStarted(d) if d.turn_id == turn_id => Some(d.model.clone()),
        _ => None,
    });
    let provider_allows = provider_allows
        .and_then(|model| model.split_once('/').map(|(provider, _)| provider.to_owned()))
        .and_then(|provider| config.providers.get(&provider).map(|p| p.retry_unknown_outcome == Some(true)))
        .unwrap_or(false);
    let idempotent = bodies.iter().all(|b| match b {
        EventBody::ToolCalled(d) if d.turn_id == turn_id => services.tools.get(&d.tool).is_some_and(|t| t.idempotent()),
        _ => true,
    });
    if provider_allows && idempotent && retried < policy.budget() {
        let delay = super::turn::backoff(services.settings.retry_base, retried + 1);
        events.push(event(EventBody::RetryScheduled(RetryScheduledData {
            turn_id: turn_id.to_owned(),
            attempt: retried + 1,
            at: crate::store::now_millis() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error: ProviderFailure { kind: recovery::UNKNOWN_OUTCOME.into(), message: message.into(), status: None },
        }))?);
        events.push(status(SessionStatus::Retrying)?);
        services.append_events(&session.id, events)?;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return Ok(Recovered::Nothing),
            _ = services.shutdown.cancelled() => return Ok(Recovered::Nothing),
        }
        services.append_events(
            &session.id,
            vec![
                event(EventBody::RecoveryResolved(RecoveryResolvedData {
                    activity_id: activity_id.to_owned(),
                    decision: RecoveryDecision::Retry,
                    by: recovery::BY_POLICY.into(),
                }))?,
                event(EventBody::ActivityResumed(ActivityResumedData {
                    activity_id: activity_id.to_owned(),
                    after: keel_protocol::turn::ResumedAfter::Decision,
                }))?,
                status(SessionStatus::Running)?,
            ],
        )?;
        return Ok(Recovered::Continue(Box::new(Activity::resumed(
            services,
            session.clone(),
            activity_id.to_owned(),
            false,
        ))));
    }
    events.push(event(EventBody::RecoveryRequired(RecoveryRequiredData {
        activity_id: activity_id.to_owned(),
        turn_id: turn_id.to_owned(),
        reason,
        message: message.into(),
    }))?);
    events.push(status(SessionStatus::Recovering)?);
    services.append_events(&session.id, events)?;
    Ok(Recovered::Waiting)
}

/// Settles the tool calls a stopped engine left: a call whose approval was answered runs now (or is refused), one
/// whose approval is still pending keeps waiting, and any other fails as interrupted. True when a call still waits
/// for its approval.
async fn settle_tool_calls(
    services: &Arc<Services>,
    session: &SessionRow,
    cancel: &CancellationToken,
) -> Result<bool, Error> {
    let session_id = session.id.as_str();
    let unsettled = services.store.query(|c| transcript::unsettled_tool_calls(c, session_id))?;
    let mut waiting = false;
    for (call_id, state) in unsettled {
        let approval = services.store.query(|c| approvals::for_call(c, session_id, &call_id))?;
        // A call that had started may have done part of its work: it is never run twice.
        let approval = approval.filter(|_| state == "pending");
        match approval.as_ref().map(|a| (a.state, a.decision)) {
            Some((ApprovalState::Pending, _)) => waiting = true,
            Some((_, Some(decision @ (Resolved::Once | Resolved::Always | Resolved::Reject)))) => {
                let resolution =
                    approval::Resolution { decision, message: approval.as_ref().and_then(|a| a.message.clone()) };
                match approval::gate_for(&resolution) {
                    Gate::Run => run_recovered_call(services, session, &call_id, cancel).await?,
                    Gate::Refuse(error) => services.append_events(
                        session_id,
                        vec![event(EventBody::ToolFailed(ToolFailedData { call_id, error }))?],
                    )?,
                    Gate::Interrupted | Gate::Suspended => {}
                }
            }
            _ => {
                let error = if state == "pending" {
                    "interrupted: the engine stopped before this call ran"
                } else {
                    "interrupted: the engine stopped while the tool ran"
                };
                services.append_events(
                    session_id,
                    vec![event(EventBody::ToolFailed(ToolFailedData { call_id, error: error.into() }))?],
                )?
            }
        }
    }
    Ok(waiting)
}

/// Runs a call whose approval was answered while no process waited for it.
async fn run_recovered_call(
    services: &Arc<Services>,
    session: &SessionRow,
    call_id: &str,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    let Some((tool, input)) = services.store.query(|c| transcript::tool_call(c, &session.id, call_id))? else {
        return Ok(());
    };
    let config = services.config(Some(&session.cwd));
    let cwd = std::path::PathBuf::from(&session.cwd);
    let ctx = ToolContext {
        session_id: session.id.clone(),
        call_id: call_id.to_owned(),
        sandbox: Arc::new(crate::sandbox::Policy::for_agent(&config, &session.agent, &cwd, &services.paths)),
        cwd,
        output_dir: services.output_dir(&session.id),
        cancel: cancel.child_token(),
    };
    let limits = output_limits(&config);
    services.append_events(
        &session.id,
        vec![event(EventBody::ToolStarted(ToolStartedData { call_id: call_id.to_owned() }))?],
    )?;
    let result = services.tools.run(&tool, input, ctx.clone()).await;
    services.append_events(&session.id, vec![settlement(call_id.to_owned(), result, limits, &ctx.output_dir)?])
}

fn status(status: SessionStatus) -> Result<NewEvent, Error> {
    event(EventBody::SessionStatus(StatusData { status }))
}

fn turn_failed(turn_id: &str, kind: &str, message: &str) -> Result<NewEvent, Error> {
    event(EventBody::TurnFailed(TurnFailedData {
        turn_id: turn_id.to_owned(),
        error: ProviderFailure { kind: kind.into(), message: message.into(), status: None },
        retryable: true,
    }))
}
