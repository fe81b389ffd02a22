//! The catalogue of durable events: every kind, its version and its payload type, declared once.
//!
//! The engine never names an event kind as a string: it builds an [`EventBody`], and every reader decodes stored
//! events into one with [`EventBody::decode`] and matches on it. A reader that forgets a kind does not compile; a
//! payload it cannot read is a [`DecodeError`], never skipped.

use std::fmt;
use std::str::FromStr;

use serde_json::value::RawValue;

use crate::agent::{SkillLoadedData, SubagentCompletedData, SubagentStartedData};
use crate::approval::{ApprovalRequestedData, ApprovalResolvedData};
use crate::compaction::{CompactionCompletedData, CompactionFailedData, CompactionStartedData};
use crate::event::{SessionCreatedData, SessionDeletedData, SessionUpdatedData};
use crate::job::{JobCancelledData, JobCompletedData, JobFailedData, JobStartedData};
use crate::plugin::{PluginActedData, PluginFailedData};
use crate::recovery::{RecoveryRequiredData, RecoveryResolvedData};
use crate::shell::{ShellCompletedData, ShellStartedData};
use crate::turn::{
    ActivityClosedData, ActivityOpenedData, ActivityResumedData, ActivitySuspendedData, InputAdmittedData,
    InputPromotedData, InputRemovedData, PartCompletedData, QueueData, RetryScheduledData, StatusData, ToolCalledData,
    ToolCompletedData, ToolFailedData, ToolStartedData, TurnCompletedData, TurnDispatchedData, TurnFailedData,
    TurnStartedData,
};

/// Why a stored event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownKind(String),
    #[error("{kind} has version {version}; this engine reads version {known}")]
    UnknownVersion { kind: EventKind, version: u32, known: u32 },
    #[error("{kind}: unreadable data: {source}")]
    Payload { kind: EventKind, source: serde_json::Error },
}

/// Declares the catalogue: `Variant = "kind", version => PayloadType`.
macro_rules! catalogue {
    ($( $(#[$doc:meta])* $variant:ident = $kind:literal, $version:literal => $data:ty; )*) => {
        /// The kind of a durable event: the `type` of `session/event`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $( $(#[$doc])* $variant, )*
        }

        impl EventKind {
            /// Every kind, in catalogue order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            /// The dotted wire name, e.g. `session.created`.
            pub const fn as_str(self) -> &'static str {
                match self { $(EventKind::$variant => $kind,)* }
            }

            /// The version of the payload shape this crate writes and reads.
            pub const fn version(self) -> u32 {
                match self { $(EventKind::$variant => $version,)* }
            }

            /// Adds the kind's payload schema to a generator; the schema's event table comes from here.
            pub(crate) fn data_schema(self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                match self { $(EventKind::$variant => generator.subschema_for::<$data>(),)* }
            }
        }

        impl FromStr for EventKind {
            type Err = DecodeError;

            fn from_str(kind: &str) -> Result<Self, DecodeError> {
                match kind {
                    $($kind => Ok(EventKind::$variant),)*
                    other => Err(DecodeError::UnknownKind(other.to_owned())),
                }
            }
        }

        /// A durable event's payload, typed by its kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum EventBody {
            $( $(#[$doc])* $variant($data), )*
        }

        impl EventBody {
            pub fn kind(&self) -> EventKind {
                match self { $(EventBody::$variant(_) => EventKind::$variant,)* }
            }

            /// Reads a stored payload. Only the version this crate knows is accepted.
            pub fn decode(kind: EventKind, version: u32, data: &str) -> Result<Self, DecodeError> {
                if version != kind.version() {
                    return Err(DecodeError::UnknownVersion { kind, version, known: kind.version() });
                }
                let payload = |source| DecodeError::Payload { kind, source };
                match kind {
                    $(EventKind::$variant => serde_json::from_str(data).map(EventBody::$variant).map_err(payload),)*
                }
            }

            /// The payload as stored and sent: the data type's own serialization.
            pub fn encode(&self) -> serde_json::Result<Box<RawValue>> {
                match self { $(EventBody::$variant(data) => serde_json::value::to_raw_value(data),)* }
            }
        }
    };
}

catalogue! {
    /// The first event of every session.
    SessionCreated = "session.created", 1 => SessionCreatedData;
    SessionUpdated = "session.updated", 1 => SessionUpdatedData;
    /// The last event of a session.
    SessionDeleted = "session.deleted", 1 => SessionDeletedData;
    SessionStatus = "session.status", 1 => StatusData;
    InputAdmitted = "input.admitted", 1 => InputAdmittedData;
    InputRemoved = "input.removed", 1 => InputRemovedData;
    InputPromoted = "input.promoted", 1 => InputPromotedData;
    ActivityOpened = "activity.opened", 1 => ActivityOpenedData;
    ActivityClosed = "activity.closed", 1 => ActivityClosedData;
    QueuePaused = "queue.paused", 1 => QueueData;
    QueueResumed = "queue.resumed", 1 => QueueData;
    TurnStarted = "turn.started", 1 => TurnStartedData;
    TurnCompleted = "turn.completed", 1 => TurnCompletedData;
    TurnFailed = "turn.failed", 1 => TurnFailedData;
    RetryScheduled = "retry.scheduled", 1 => RetryScheduledData;
    TextCompleted = "text.completed", 1 => PartCompletedData;
    ReasoningCompleted = "reasoning.completed", 1 => PartCompletedData;
    ToolCalled = "tool.called", 1 => ToolCalledData;
    ToolStarted = "tool.started", 1 => ToolStartedData;
    ToolCompleted = "tool.completed", 1 => ToolCompletedData;
    ToolFailed = "tool.failed", 1 => ToolFailedData;
    ApprovalRequested = "approval.requested", 1 => ApprovalRequestedData;
    ApprovalResolved = "approval.resolved", 1 => ApprovalResolvedData;
    /// The request of a turn's attempt is about to be sent.
    TurnDispatched = "turn.dispatched", 1 => TurnDispatchedData;
    /// The model's answer ended while tool calls of the turn still run; `turn.completed` follows once they
    /// settle, with the same data.
    TurnStreamed = "turn.streamed", 1 => TurnCompletedData;
    ActivitySuspended = "activity.suspended", 1 => ActivitySuspendedData;
    ActivityResumed = "activity.resumed", 1 => ActivityResumedData;
    /// An activity waits for `recovery/decide`.
    RecoveryRequired = "recovery.required", 1 => RecoveryRequiredData;
    RecoveryResolved = "recovery.resolved", 1 => RecoveryResolvedData;
    CompactionStarted = "compaction.started", 1 => CompactionStartedData;
    /// The model's context starts at a new checkpoint.
    CompactionCompleted = "compaction.completed", 1 => CompactionCompletedData;
    CompactionFailed = "compaction.failed", 1 => CompactionFailedData;
    SkillLoaded = "skill.loaded", 1 => SkillLoadedData;
    /// A `task` call started a child session.
    SubagentStarted = "subagent.started", 1 => SubagentStartedData;
    SubagentCompleted = "subagent.completed", 1 => SubagentCompletedData;
    /// A background job started; its end is delivered into the session as input.
    JobStarted = "job.started", 1 => JobStartedData;
    JobCompleted = "job.completed", 1 => JobCompletedData;
    JobFailed = "job.failed", 1 => JobFailedData;
    JobCancelled = "job.cancelled", 1 => JobCancelledData;
    /// A user's command (`session/shell`) started; `shell.completed` follows with its output.
    ShellStarted = "shell.started", 1 => ShellStartedData;
    ShellCompleted = "shell.completed", 1 => ShellCompletedData;
    /// A plugin's hook changed a call or a request.
    PluginActed = "plugin.acted", 1 => PluginActedData;
    /// A plugin's hook failed; the call or request went on unchanged.
    PluginFailed = "plugin.failed", 1 => PluginFailedData;
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_its_name() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>().ok(), Some(*kind));
        }
    }

    #[test]
    fn unreadable_events_are_errors() {
        assert!(matches!("nope.nope".parse::<EventKind>(), Err(DecodeError::UnknownKind(_))));
        let newer = EventBody::decode(EventKind::QueuePaused, 2, "{}");
        assert!(matches!(newer, Err(DecodeError::UnknownVersion { version: 2, known: 1, .. })));
        let bad = EventBody::decode(EventKind::ToolStarted, 1, "{}");
        assert!(matches!(bad, Err(DecodeError::Payload { kind: EventKind::ToolStarted, .. })));
    }

    #[test]
    fn encoding_is_the_payload_alone() {
        let body = EventBody::QueuePaused(QueueData {});
        assert_eq!(body.encode().map(|raw| raw.get().to_owned()).ok().as_deref(), Some("{}"));
        assert_eq!(EventBody::decode(body.kind(), 1, "{}").ok(), Some(body));
    }
}
