//! Where an open activity stopped, read from its own events: the one fold that recovery acts on.
//!
//! A provider attempt is prepared (`turn.started`, `retry.scheduled`), then dispatched (`turn.dispatched`, recorded
//! before the request leaves), then streamed (a part or a tool call recorded), then settled (`turn.completed` or
//! `turn.failed`). An attempt never dispatched is safe to run again; one dispatched and not settled may have
//! reached the model, so only a decision (`recovery.resolved`) lets the activity go on.

use keel_protocol::catalogue::EventBody;
use keel_protocol::recovery::{RecoveryDecision, RecoveryReason};
use keel_protocol::turn::{ActivityTrigger, ResumedAfter, TurnCompletedData};

/// `turn.failed` kinds that recovery and shutdown record.
pub const NOT_SENT: &str = "not_sent";
pub const UNKNOWN_OUTCOME: &str = "unknown_outcome";
pub const SUSPENDED: &str = "suspended";
/// The kind of a provider's context overflow.
pub const CONTEXT_OVERFLOW: &str = "context_overflow";
/// `recovery.resolved.by` of a retry that config allowed.
pub const BY_POLICY: &str = "policy";

#[derive(Debug, Clone, PartialEq)]
pub enum Situation {
    /// Every attempt has a known outcome and the model has more to do (tool results to read, input joined, or no
    /// turn yet): the activity goes on with a new turn, once `open` (if any) is closed.
    Continue { after: ResumedAfter, open: Option<OpenTurn> },
    /// The last turn answered without tool calls and nothing joined after it: only the closing is left.
    Finished,
    /// The last turn failed, as recorded; the activity closes as failed.
    Failed(String),
    /// The activity was being interrupted.
    Interrupted,
    /// An attempt may have reached the model. `asked`: `recovery.required` is already in the log.
    Unknown { turn_id: String, reason: RecoveryReason, asked: bool },
    /// A client decided to abandon it.
    Abandoned,
}

/// A turn whose outcome is known but not yet recorded as its end.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenTurn {
    /// Prepared and never dispatched: it fails as not sent.
    Unsent(String),
    /// Its answer ended (`turn.streamed`) while its tool calls ran: it completes with that data.
    Answered(TurnCompletedData),
}

#[derive(Debug, Clone, PartialEq)]
enum Attempt {
    Prepared,
    Dispatched,
    Streamed,
    Answered(TurnCompletedData),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Last {
    /// The model is owed a turn.
    NeedsTurn,
    Done,
    Failed(String),
    Interrupted,
    Abandoned,
}

/// Reads the events of one activity, from its `activity.opened` on.
pub fn examine<'a>(events: impl IntoIterator<Item = &'a EventBody>) -> Situation {
    let mut turn: Option<(String, Attempt, bool)> = None;
    let mut last = Last::NeedsTurn;
    let mut after = ResumedAfter::Crash;
    let mut asked: Option<(String, RecoveryReason)> = None;
    // A `session/compact` activity makes no turn: its compaction's outcome is the activity's.
    let mut compact = false;
    for body in events {
        match body {
            EventBody::ActivityOpened(d) => {
                last = Last::NeedsTurn;
                compact = d.trigger == ActivityTrigger::Compact;
            }
            EventBody::CompactionCompleted(_) if compact => last = Last::Done,
            EventBody::CompactionFailed(d) if compact => last = Last::Failed(d.error.clone()),
            EventBody::InputPromoted(_) if turn.is_none() => last = Last::NeedsTurn,
            EventBody::TurnStarted(d) => turn = Some((d.turn_id.clone(), Attempt::Prepared, false)),
            EventBody::RetryScheduled(_) => {
                if let Some((_, attempt, _)) = &mut turn {
                    *attempt = Attempt::Prepared;
                }
            }
            EventBody::TurnDispatched(_) => {
                if let Some((_, attempt, _)) = &mut turn {
                    *attempt = Attempt::Dispatched;
                }
            }
            EventBody::TextCompleted(_) | EventBody::ReasoningCompleted(_) | EventBody::ToolCalled(_) => {
                if let Some((_, attempt, called)) = &mut turn {
                    *attempt = Attempt::Streamed;
                    *called |= matches!(body, EventBody::ToolCalled(_));
                }
            }
            EventBody::TurnStreamed(d) => {
                if let Some((_, attempt, _)) = &mut turn {
                    *attempt = Attempt::Answered(d.clone());
                }
            }
            EventBody::TurnCompleted(_) => {
                let called = turn.take().is_some_and(|(_, _, called)| called);
                last = if called { Last::NeedsTurn } else { Last::Done };
            }
            EventBody::TurnFailed(d) => {
                turn = None;
                last = match d.error.kind.as_str() {
                    NOT_SENT | SUSPENDED => Last::NeedsTurn,
                    // Waits for the decision that `recovery.required` asks for.
                    UNKNOWN_OUTCOME => Last::NeedsTurn,
                    // A context overflow that a compaction answers: the step runs again (a compaction that the
                    // engine did not finish runs again first).
                    CONTEXT_OVERFLOW if d.retryable => Last::NeedsTurn,
                    "interrupted" => Last::Interrupted,
                    _ => Last::Failed(d.error.message.clone()),
                };
            }
            EventBody::ActivitySuspended(_) => after = ResumedAfter::Suspension,
            EventBody::ActivityResumed(_) => after = ResumedAfter::Crash,
            EventBody::RecoveryRequired(d) => asked = Some((d.turn_id.clone(), d.reason)),
            EventBody::RecoveryResolved(d) => {
                asked = None;
                match d.decision {
                    RecoveryDecision::Retry => {
                        last = Last::NeedsTurn;
                        after = ResumedAfter::Decision;
                    }
                    RecoveryDecision::Abandon => last = Last::Abandoned,
                }
            }
            _ => {}
        }
    }
    if last == Last::Abandoned {
        return Situation::Abandoned;
    }
    if let Some((turn_id, reason)) = asked {
        return Situation::Unknown { turn_id, reason, asked: true };
    }
    match turn {
        Some((turn_id, Attempt::Prepared, _)) => Situation::Continue { after, open: Some(OpenTurn::Unsent(turn_id)) },
        Some((_, Attempt::Answered(data), _)) => Situation::Continue { after, open: Some(OpenTurn::Answered(data)) },
        Some((turn_id, Attempt::Dispatched, _)) => {
            Situation::Unknown { turn_id, reason: RecoveryReason::AttemptDispatched, asked: false }
        }
        Some((turn_id, Attempt::Streamed, _)) => {
            Situation::Unknown { turn_id, reason: RecoveryReason::AttemptStreamed, asked: false }
        }
        None => match last {
            Last::NeedsTurn => Situation::Continue { after, open: None },
            Last::Done => Situation::Finished,
            Last::Failed(error) => Situation::Failed(error),
            Last::Interrupted => Situation::Interrupted,
            Last::Abandoned => Situation::Abandoned,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_protocol::compaction::{
        CompactionCompletedData, CompactionFailedData, CompactionReason, CompactionStartedData,
    };
    use keel_protocol::recovery::{RecoveryRequiredData, RecoveryResolvedData};
    use keel_protocol::turn::*;

    /// One word per event: `open`, `start`, `retry`, `send`, `text`, `call`, `streamed`, `done`, `fail:<kind>`,
    /// `promote`, `suspend`, `resume`, `ask`, `retry!`, `abandon!`, `overflow` (a retryable context overflow),
    /// `compact` (a `session/compact` activity opens), `compacting`, `compacted`, `compact-failed`.
    fn check(log: &str, expected: Situation) {
        let failure = |kind: &str| ProviderFailure { kind: kind.into(), message: format!("{kind}!"), status: None };
        let events: Vec<EventBody> = log
            .split_whitespace()
            .map(|word| match word {
                "open" | "compact" => EventBody::ActivityOpened(ActivityOpenedData {
                    activity_id: "a".into(),
                    trigger: if word == "compact" { ActivityTrigger::Compact } else { ActivityTrigger::Queue },
                    step_limit: 50,
                }),
                "overflow" => EventBody::TurnFailed(TurnFailedData {
                    turn_id: "t".into(),
                    error: failure(CONTEXT_OVERFLOW),
                    retryable: true,
                }),
                "compacting" => EventBody::CompactionStarted(CompactionStartedData {
                    compaction_id: "c".into(),
                    reason: CompactionReason::Overflow,
                }),
                "compacted" => EventBody::CompactionCompleted(CompactionCompletedData {
                    compaction_id: "c".into(),
                    checkpoint_seq: 3,
                    tokens_before: 10,
                    tokens_after: 5,
                    summary: Some("s".into()),
                    pruned_calls: Vec::new(),
                    usage: None,
                }),
                "compact-failed" => {
                    EventBody::CompactionFailed(CompactionFailedData { compaction_id: "c".into(), error: "no".into() })
                }
                "start" => EventBody::TurnStarted(TurnStartedData {
                    turn_id: "t".into(),
                    activity_id: "a".into(),
                    message_id: "m".into(),
                    model: "p/m".into(),
                    agent: "build".into(),
                    instructions: Vec::new(),
                }),
                "retry" => EventBody::RetryScheduled(RetryScheduledData {
                    turn_id: "t".into(),
                    attempt: 1,
                    at: 0,
                    delay_ms: 0,
                    error: failure("server_error"),
                }),
                "send" => EventBody::TurnDispatched(TurnDispatchedData { turn_id: "t".into(), attempt: 1 }),
                "text" => EventBody::TextCompleted(PartCompletedData {
                    turn_id: "t".into(),
                    message_id: "m".into(),
                    part_id: "p".into(),
                    text: "hi".into(),
                    signature: None,
                }),
                "call" => EventBody::ToolCalled(ToolCalledData {
                    turn_id: "t".into(),
                    message_id: "m".into(),
                    call_id: "c".into(),
                    provider_call_id: None,
                    tool: "read".into(),
                    input: serde_json::json!({}),
                }),
                "done" => EventBody::TurnCompleted(completed()),
                "streamed" => EventBody::TurnStreamed(completed()),
                "promote" => EventBody::InputPromoted(InputPromotedData {
                    input_ids: vec!["i".into()],
                    activity_id: "a".into(),
                    message_id: "m2".into(),
                }),
                "suspend" => EventBody::ActivitySuspended(ActivitySuspendedData { activity_id: "a".into() }),
                "resume" => EventBody::ActivityResumed(ActivityResumedData {
                    activity_id: "a".into(),
                    after: ResumedAfter::Crash,
                }),
                "ask" => EventBody::RecoveryRequired(RecoveryRequiredData {
                    activity_id: "a".into(),
                    turn_id: "t".into(),
                    reason: RecoveryReason::AttemptStreamed,
                    message: String::new(),
                }),
                "retry!" | "abandon!" => EventBody::RecoveryResolved(RecoveryResolvedData {
                    activity_id: "a".into(),
                    decision: if word == "retry!" { RecoveryDecision::Retry } else { RecoveryDecision::Abandon },
                    by: "client".into(),
                }),
                fail if fail.starts_with("fail:") => EventBody::TurnFailed(TurnFailedData {
                    turn_id: "t".into(),
                    error: failure(&fail[5..]),
                    retryable: false,
                }),
                other => panic!("unknown word {other}"),
            })
            .collect();
        assert_eq!(examine(&events), expected, "{log}");
    }

    fn go(after: ResumedAfter) -> Situation {
        Situation::Continue { after, open: None }
    }

    fn unsent() -> Situation {
        Situation::Continue { after: ResumedAfter::Crash, open: Some(OpenTurn::Unsent("t".into())) }
    }

    fn completed() -> TurnCompletedData {
        TurnCompletedData {
            turn_id: "t".into(),
            finish_reason: "stop".into(),
            usage: Default::default(),
            cost_usd: 0.0,
        }
    }

    fn unknown(reason: RecoveryReason, asked: bool) -> Situation {
        Situation::Unknown { turn_id: "t".into(), reason, asked }
    }

    #[test]
    fn situations() {
        use RecoveryReason::*;
        use ResumedAfter::*;
        check("open", go(Crash));
        check("open start", unsent());
        check("open start send retry", unsent());
        check("open start send", unknown(AttemptDispatched, false));
        check("open start send text", unknown(AttemptStreamed, false));
        check("open start send call", unknown(AttemptStreamed, false));
        check("open start send call done", go(Crash));
        check("open start send text done", Situation::Finished);
        check("open start send text done promote", go(Crash));
        check("open start send fail:server_error", Situation::Failed("server_error!".into()));
        check("open start send fail:interrupted", Situation::Interrupted);
        check("open start send text fail:suspended suspend", go(Suspension));
        check("open start send call done suspend", go(Suspension));
        check("open start send call done suspend resume start", unsent());
        check(
            "open start send call streamed",
            Situation::Continue { after: Crash, open: Some(OpenTurn::Answered(completed())) },
        );
        check("open start send call streamed done", go(Crash));
        check("open start send text fail:unknown_outcome ask", unknown(AttemptStreamed, true));
        check("open start send text fail:unknown_outcome ask retry!", go(Decision));
        check("open start send text fail:unknown_outcome ask abandon!", Situation::Abandoned);
        check("open start send fail:unknown_outcome ask retry! resume start send", unknown(AttemptDispatched, false));
        // An overflow's compaction, finished or not, leaves the step to run again.
        check("open start send overflow", go(Crash));
        check("open start send overflow compacting", go(Crash));
        check("open start send overflow compacting compacted", go(Crash));
        check("open start send fail:context_overflow", Situation::Failed("context_overflow!".into()));
        // A `session/compact` activity is its compaction.
        check("compact promote compacting", go(Crash));
        check("compact promote compacting compacted", Situation::Finished);
        check("compact promote compacting compact-failed", Situation::Failed("no".into()));
        check("open start send text done compacting compacted", Situation::Finished);
    }
}
