//! One provider turn of an activity: the request built from the projection, its attempts (retried only while
//! nothing was streamed), and the outcome the activity loop acts on.

use std::sync::Arc;
use std::time::Duration;

use keel_protocol::catalogue::EventBody;
use keel_protocol::session::SessionStatus;
use keel_protocol::turn::{
    ProviderFailure, RetryScheduledData, StatusData, TurnCompletedData, TurnDispatchedData, TurnFailedData,
    TurnStartedData,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::stream::{Measured, StreamResult, TurnStream};
use super::{Activity, id};
use crate::config::Config;
use crate::plugin::ChatDraft;
use crate::provider::registry::Resolved;
use crate::provider::{ProviderError, Request, TokenUsage};
use crate::session::context::Context;
use crate::session::{Error, Services, compaction, context, event, recovery};
use crate::store;

pub(super) enum TurnOutcome {
    /// Tool calls ran; the model continues.
    Continue,
    Done,
    Failed(String),
    Interrupted,
    /// The provider refused the request as too long before answering anything; the turn is recorded as failed
    /// (retryable) and the step runs again once the context is compacted.
    Overflow(String),
}

fn failure(e: &ProviderError) -> ProviderFailure {
    ProviderFailure { kind: e.kind().into(), message: e.to_string(), status: e.status() }
}

/// What one step of the activity runs with: the config read once for it and its model resolved against it, shared
/// by the compaction check before the turn and the turn itself.
pub(super) struct Step {
    pub(super) config: Config,
    pub(super) model: String,
    pub(super) resolved: Result<Resolved, ProviderError>,
}

impl Step {
    /// Config is read per step, so that edits reach running sessions at their next turn.
    pub(super) fn read(services: &Services, activity: &Activity) -> Self {
        let config = services.config(Some(&activity.session.cwd));
        let model = activity_model(activity, &config);
        let resolved = services.providers.resolve(&config, &model);
        Self { config, model, resolved }
    }
}

/// The `provider/model` of the activity's turns: the input's, the session's, the agent's, or the default.
pub(super) fn activity_model(activity: &Activity, config: &Config) -> String {
    activity
        .model
        .clone()
        .unwrap_or_else(|| crate::session::service::model_of(&activity.session, &activity.agent, config))
}

/// The request of a turn without its messages: what every request of the activity carries besides the context,
/// and the instruction files its system prompt holds.
pub(super) fn request_shape(
    services: &Services,
    activity: &Activity,
    config: &Config,
    resolved: &Resolved,
) -> (Request, Vec<String>) {
    let cwd = std::path::PathBuf::from(&activity.session.cwd);
    let skills = crate::agent::skills::discover(&services.paths, Some(&cwd));
    let tools = offered_tools(services, activity, config, !skills.is_empty());
    let system = context::system_prompt(config, &services.paths, &activity.agent, &cwd, &tools, &skills);
    let request = Request {
        model: resolved.spec.model().to_owned(),
        system: system.text,
        messages: Vec::new(),
        tools,
        max_output_tokens: resolved.spec.max_output_tokens.min(32_000),
        reasoning_effort: resolved
            .spec
            .reasoning
            .then(|| crate::session::service::effort_of(&activity.session, &activity.agent, config))
            .flatten(),
        temperature: None,
        headers: Vec::new(),
        session_id: activity.session.id.clone(),
    };
    (request, system.instructions)
}

/// The tools the activity's agent is offered: `task` only where there is a subagent to start, `skill` only where
/// there is a skill to load.
fn offered_tools(
    services: &Services,
    activity: &Activity,
    config: &Config,
    has_skills: bool,
) -> Vec<crate::provider::ToolSpec> {
    let agent = config.agents.get(&activity.agent);
    let has_subagents = config.agents.values().any(crate::agent::is_subagent);
    let mut tools: Vec<_> = services
        .tools
        .specs_for(&activity.session.id)
        .into_iter()
        .filter(|t| crate::agent::offers(agent, &t.name))
        .collect();
    tools.retain(|t| match t.name.as_str() {
        "task" => has_subagents,
        "skill" => has_skills,
        _ => true,
    });
    tools
}

/// Runs one provider turn. `may_compact`: a context overflow ends the turn as `Overflow` for the activity to compact
/// and run the step again; false when this is that second run, whose overflow fails the activity. With
/// `compaction.auto: false` an overflow fails like any other refusal.
pub(super) async fn run_turn(
    services: &Arc<Services>,
    activity: &Activity,
    step: &Step,
    cancel: &CancellationToken,
    may_compact: bool,
) -> Result<TurnOutcome, Error> {
    let session_id = &activity.session.id;
    let (config, model) = (&step.config, &step.model);
    let turn = Turn { turn_id: id("turn"), message_id: id("msg"), session_id: session_id.clone() };
    let started = |instructions: Vec<String>| {
        event(EventBody::TurnStarted(TurnStartedData {
            turn_id: turn.turn_id.clone(),
            activity_id: activity.id.clone(),
            message_id: turn.message_id.clone(),
            model: model.clone(),
            agent: activity.agent.clone(),
            instructions,
        }))
    };
    let resolved = match &step.resolved {
        Ok(resolved) => resolved,
        Err(e) => {
            services.append_events(session_id, vec![started(Vec::new())?])?;
            return turn.fail(services, e, false);
        }
    };
    let cwd = std::path::PathBuf::from(&activity.session.cwd);
    let auto_compaction = compaction::settings(config).auto != Some(false);
    // MCP servers still on their first start join the turn's tools before it is shaped.
    services.tools.settle(session_id, cancel).await;
    let (mut request, instructions) = request_shape(services, activity, config, resolved);
    let mut hooked = Vec::new();
    let draft = ChatDraft { session_id, agent: &activity.agent, model };
    services.plugins.chat_params(draft, &mut request, &mut hooked).await;
    // Recorded with the first dispatch, in one transaction: an engine that stops before it leaves no turn at all,
    // which recovery reads the same as a prepared one (never sent).
    let mut started = Some(started(instructions)?);
    let mut hooked = hooked.into_iter().map(event).collect::<Result<Vec<_>, _>>()?;
    request.messages = Context::load(&services.store, session_id)?.messages(&cwd);
    // The same estimate the compaction check made just before: whatever compaction could do has been done.
    let estimate = compaction::measure(&services.store, session_id, compaction::overhead_chars(&request))?.tokens;
    let window = resolved.spec.context_window;
    if window > 0 && estimate > window {
        // The provider would refuse it (or, worse, silently cut it): said without spending a request.
        let e = ProviderError::ContextOverflow {
            message: format!("the request is about {estimate} tokens, above the model's {window}-token window"),
        };
        services.append_events(session_id, started.take().into_iter().chain(hooked).collect())?;
        return turn.fail(services, &e, false);
    }

    let mut attempt = 0;
    loop {
        // Recorded before the request leaves: a log without it proves the request was never sent.
        let dispatched = event(EventBody::TurnDispatched(TurnDispatchedData {
            turn_id: turn.turn_id.clone(),
            attempt: attempt + 1,
        }))?;
        let first = started.take().into_iter().chain(hooked.drain(..));
        services.append_events(session_id, first.chain([dispatched]).collect())?;
        let mut stream = TurnStream::new(services, &turn, activity, cancel.child_token(), cwd.clone(), config);
        let result = stream.run(&*resolved.provider, &request, cancel).await;
        let flushed = stream.flush_parts();
        let called_tools = stream.called;
        let produced = stream.produced_output;
        let tools = stream.tools;
        // Whatever happens below, the tool calls' questions must not wait for an end that was not recorded.
        let _answered = stream.answered.clone().drop_guard();
        services.append_events(session_id, flushed)?;
        match result {
            StreamResult::Finished { finish_reason, usage } => {
                let usage_wire = match usage {
                    Measured::Reported(usage) => crate::session::usage::priced(&resolved.spec, &usage),
                    Measured::Unreported { said_chars, thought_chars } => {
                        let usage = TokenUsage {
                            input: estimate,
                            output: compaction::chars_to_tokens(said_chars),
                            reasoning: compaction::chars_to_tokens(thought_chars),
                            ..TokenUsage::default()
                        };
                        keel_protocol::session::Usage {
                            estimated: true,
                            ..crate::session::usage::priced(&resolved.spec, &usage)
                        }
                    }
                };
                let completed = TurnCompletedData {
                    turn_id: turn.turn_id.clone(),
                    finish_reason,
                    cost_usd: usage_wire.cost_usd,
                    usage: usage_wire,
                };
                // The answer is complete: an engine that stops while the tools run must not take it for a cut one.
                if !tools.is_empty() {
                    services.append_events(session_id, vec![event(EventBody::TurnStreamed(completed.clone()))?])?;
                }
                stream.answered.cancel();
                settle(tools).await;
                services.append_events(session_id, vec![event(EventBody::TurnCompleted(completed))?])?;
                services.report_usage(session_id, &resolved.spec, &compaction::settings(config))?;
                return Ok(if called_tools { TurnOutcome::Continue } else { TurnOutcome::Done });
            }
            StreamResult::Interrupted => {
                stream.answered.cancel();
                settle(tools).await;
                let suspending = services.shutdown.is_cancelled();
                services.append_events(
                    session_id,
                    vec![event(EventBody::TurnFailed(TurnFailedData {
                        turn_id: turn.turn_id.clone(),
                        error: if suspending {
                            ProviderFailure {
                                kind: recovery::SUSPENDED.into(),
                                message: "cut off by the engine's shutdown".into(),
                                status: None,
                            }
                        } else {
                            ProviderFailure { kind: "interrupted".into(), message: "interrupted".into(), status: None }
                        },
                        retryable: suspending,
                    }))?],
                )?;
                return Ok(TurnOutcome::Interrupted);
            }
            StreamResult::Failed(e) => {
                stream.answered.cancel();
                settle(tools).await;
                let e = match e {
                    // Some servers (llama.cpp, Ollama) answer a prompt past their context with a 200 and then
                    // nothing; retrying it would only fail the same way.
                    ProviderError::Interrupted(_) if window > 0 && !produced && estimate > window / 2 => {
                        ProviderError::ContextOverflow {
                            message: format!(
                                "the stream ended empty after a request of about {estimate} tokens, more than half \
                                 the model's {window}-token window"
                            ),
                        }
                    }
                    e => e,
                };
                if matches!(e, ProviderError::ContextOverflow { .. }) && !produced {
                    if may_compact && auto_compaction {
                        services.append_events(
                            session_id,
                            vec![event(EventBody::TurnFailed(TurnFailedData {
                                turn_id: turn.turn_id.clone(),
                                error: failure(&e),
                                retryable: true,
                            }))?],
                        )?;
                        return Ok(TurnOutcome::Overflow(e.to_string()));
                    }
                    if !may_compact {
                        turn.fail(services, &e, false)?;
                        return Ok(TurnOutcome::Failed(format!("{e} (still, after compacting the context)")));
                    }
                }
                // Once output was streamed the attempt's outcome is ambiguous: never retried automatically.
                let retry = e.is_transient() && !produced && attempt < services.settings.max_retries;
                if !retry {
                    return turn.fail(services, &e, e.is_transient());
                }
                attempt += 1;
                let delay = e.retry_after().unwrap_or_else(|| backoff(services.settings.retry_base, attempt));
                services.append_events(
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
                    // Waiting for a retry is a safe point: the attempt is prepared, never sent.
                    _ = services.shutdown.cancelled() => return Ok(TurnOutcome::Interrupted),
                }
                services.append_events(
                    session_id,
                    vec![event(EventBody::SessionStatus(StatusData { status: SessionStatus::Running }))?],
                )?;
            }
        }
    }
}

/// Jittered exponential backoff: base × 2^(attempt-1), ±25%, at most 30 s.
pub(super) fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << attempt.saturating_sub(1).min(10)).min(Duration::from_secs(30));
    let jitter = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(attempt);
        (h.finish() % 500) as f64 / 1000.0 + 0.75
    };
    exp.mul_f64(jitter)
}

pub(super) struct Turn {
    pub(super) turn_id: String,
    pub(super) message_id: String,
    pub(super) session_id: String,
}

impl Turn {
    fn fail(&self, services: &Services, e: &ProviderError, retryable: bool) -> Result<TurnOutcome, Error> {
        services.append_events(
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
