//! Durable events and cursor subscriptions: `session/subscribe`, `session/events` and their notifications.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::session::EpochMillis;
use crate::{Empty, method, notification};

/// One durable state change of a session. `seq` is gapless per session, starting at 1.
///
/// `Data` is generic so that the engine can send stored payloads without re-parsing them; on the wire it is any
/// JSON value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event<Data = serde_json::Value> {
    pub session_id: String,
    pub seq: u64,
    /// Dotted, e.g. `session.created`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The version of `data`'s shape for this type; bumped instead of renaming fields.
    pub version: u32,
    pub at: EpochMillis,
    pub data: Data,
}

impl<Data> Event<Data> {
    /// The same event with its data converted, e.g. from raw JSON text to a parsed value.
    pub fn try_map_data<T, E>(self, f: impl FnOnce(Data) -> Result<T, E>) -> Result<Event<T>, E> {
        Ok(Event {
            session_id: self.session_id,
            seq: self.seq,
            kind: self.kind,
            version: self.version,
            at: self.at,
            data: f(self.data)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeParams {
    pub session_id: String,
    /// Exclusive cursor: 0 (default) replays everything, -1 starts from now.
    #[serde(default)]
    pub after_seq: i64,
    /// Also follow the subagent sessions this one starts after the cursor (and theirs): each child's events, from
    /// its first, come as `session/event` of a subscription of its own, `<subscriptionId>/<childSessionId>`, opened
    /// when the parent's `subagent.started` is delivered and ended with the parent's subscription.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_children: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeResult {
    pub subscription_id: String,
    /// The session's newest seq when the subscription started.
    pub head_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnsubscribeParams {
    pub subscription_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventsParams {
    pub session_id: String,
    /// Exclusive cursor.
    #[serde(default)]
    pub after_seq: u64,
    /// 1..=4096, default 512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Long poll: when nothing follows the cursor, wait up to this long (at most 60000) for the next commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventsResult {
    pub events: Vec<Event>,
    pub head_seq: u64,
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventNotificationParams<Data = serde_json::Value> {
    pub subscription_id: String,
    pub event: Event<Data>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncedParams {
    pub subscription_id: String,
    /// Every event up to this seq has been delivered; what follows is live.
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionEndReason {
    /// The client read too slowly; re-subscribe from `lastSeq`.
    Lagged,
    /// The session was deleted.
    Deleted,
    /// The engine is shutting down.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionEndedParams {
    pub subscription_id: String,
    pub reason: SubscriptionEndReason,
    /// The last seq delivered on this subscription.
    pub last_seq: u64,
}

/// `session.created` (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionCreatedData {
    pub cwd: String,
    pub title: String,
    pub agent: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Set on forks: the source session and the last seq copied from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkOrigin>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForkOrigin {
    pub session_id: String,
    pub at_seq: u64,
}

/// `session.updated` (version 1): only the fields that changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionUpdatedData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<crate::session::ReasoningEffort>,
}

/// `session.deleted` (version 1): the last event of a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionDeletedData {}

method!(
    /// Replays every event after the cursor as `session/event`, then `session/synced`, then live events.
    SessionSubscribe, "session/subscribe", SubscribeParams, SubscribeResult, ordered_by = "sessionId"
);
method!(SessionUnsubscribe, "session/unsubscribe", UnsubscribeParams, Empty);
method!(
    /// One page of stored events, for clients that poll instead of subscribing.
    SessionEvents, "session/events", EventsParams, EventsResult, ordered_by = "sessionId"
);
notification!(SessionEvent, "session/event", EventNotificationParams);
notification!(SessionSynced, "session/synced", SyncedParams);
notification!(SessionSubscriptionEnded, "session/subscriptionEnded", SubscriptionEndedParams);
