//! The hooks, each run through every plugin that declared it, in order, each on the draft the one before left.
//! Whatever a hook did or failed to do is returned as events for the session, which the caller records with the
//! call or request it touched.

use std::sync::{Arc, Weak};
use std::time::Duration;

use keel_protocol::catalogue::EventBody;
use keel_protocol::plugin::{
    ChatParams, ChatParamsParams, EventHook, Hook, PermissionAnswer, PermissionAsk, PermissionAskParams,
    PluginActedData, PluginFailedData, ToolAfter, ToolAfterParams, ToolBefore, ToolBeforeParams,
};
use keel_protocol::{Method, Notification};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use super::Host;
use super::process::Plugin;
use crate::provider::Request;
use crate::rpc::PeerRef;

/// Events a hook run leaves for the session: `plugin.acted` and `plugin.failed`.
pub type Records = Vec<EventBody>;

/// How long an `event` notification may wait for a plugin that does not read.
const EVENT_STALL: Duration = Duration::from_secs(1);

/// Who is asking and with which model, for `chat/params`.
pub struct ChatDraft<'a> {
    pub session_id: &'a str,
    pub agent: &'a str,
    /// `provider/model`.
    pub model: &'a str,
}

/// One hook request to one plugin: its answer read as `M::Result`, or why there is none.
async fn ask<M: Method>(plugin: &Plugin, peer: &PeerRef, params: &M::Params) -> Result<M::Result, String>
where
    M::Params: Serialize,
    M::Result: serde::de::DeserializeOwned,
{
    let answer = peer
        .request(M::NAME, params, plugin.spec.timeout)
        .await
        .map_err(|e| super::tool::failure(&plugin.spec.name, &e))?;
    serde_json::from_value(answer).map_err(|e| format!("plugin {} answered {} badly: {e}", plugin.spec.name, M::NAME))
}

fn failed(plugin: &Plugin, hook: Hook, call_id: Option<&str>, error: String) -> EventBody {
    tracing::warn!(plugin = %plugin.spec.name, "{error}");
    EventBody::PluginFailed(PluginFailedData {
        plugin: plugin.spec.name.clone(),
        hook,
        call_id: call_id.map(str::to_owned),
        error,
    })
}

fn acted(plugin: &Plugin, hook: Hook, call_id: Option<&str>, change: String, input: Option<Value>) -> EventBody {
    EventBody::PluginActed(PluginActedData {
        plugin: plugin.spec.name.clone(),
        hook,
        call_id: call_id.map(str::to_owned),
        change,
        input,
    })
}

impl Host {
    /// `tool/before`: the input to run the call with, or the reason a plugin refused it.
    pub async fn tool_before(
        &self,
        session_id: &str,
        call_id: &str,
        tool: &str,
        mut input: Value,
        records: &mut Records,
    ) -> Result<Value, String> {
        for (plugin, peer) in self.hooked(Hook::ToolBefore) {
            let params = ToolBeforeParams {
                session_id: session_id.to_owned(),
                call_id: call_id.to_owned(),
                tool: tool.to_owned(),
                input: input.clone(),
            };
            match ask::<ToolBefore>(&plugin, &peer, &params).await {
                Err(e) => records.push(failed(&plugin, Hook::ToolBefore, Some(call_id), e)),
                Ok(answer) => {
                    if let Some(reason) = answer.refuse {
                        records.push(acted(
                            &plugin,
                            Hook::ToolBefore,
                            Some(call_id),
                            format!("refused: {reason}"),
                            None,
                        ));
                        return Err(format!("refused by plugin {}: {reason}", plugin.spec.name));
                    }
                    if let Some(rewritten) = answer.input.filter(|new| *new != input) {
                        let change = "rewrote the input".to_owned();
                        records.push(acted(&plugin, Hook::ToolBefore, Some(call_id), change, Some(rewritten.clone())));
                        input = rewritten;
                    }
                }
            }
        }
        Ok(input)
    }

    /// `tool/after`: the output the model sees.
    pub async fn tool_after(
        &self,
        session_id: &str,
        call_id: &str,
        tool: &str,
        input: &Value,
        mut output: String,
        records: &mut Records,
    ) -> String {
        for (plugin, peer) in self.hooked(Hook::ToolAfter) {
            let params = ToolAfterParams {
                session_id: session_id.to_owned(),
                call_id: call_id.to_owned(),
                tool: tool.to_owned(),
                input: input.clone(),
                output: output.clone(),
            };
            match ask::<ToolAfter>(&plugin, &peer, &params).await {
                Err(e) => records.push(failed(&plugin, Hook::ToolAfter, Some(call_id), e)),
                Ok(answer) => {
                    if let Some(rewritten) = answer.output.filter(|new| *new != output) {
                        records.push(acted(&plugin, Hook::ToolAfter, Some(call_id), "rewrote the output".into(), None));
                        output = rewritten;
                    }
                }
            }
        }
        output
    }

    /// `chat/params`: additions to the system prompt, the temperature and extra headers of a model request.
    pub async fn chat_params(&self, draft: ChatDraft<'_>, request: &mut Request, records: &mut Records) {
        for (plugin, peer) in self.hooked(Hook::ChatParams) {
            let params = ChatParamsParams {
                session_id: draft.session_id.to_owned(),
                agent: draft.agent.to_owned(),
                model: draft.model.to_owned(),
                system: request.system.clone(),
                temperature: request.temperature,
                headers: request.headers.iter().map(|(name, _)| name.clone()).collect(),
            };
            let answer = match ask::<ChatParams>(&plugin, &peer, &params).await {
                Ok(answer) => answer,
                Err(e) => {
                    records.push(failed(&plugin, Hook::ChatParams, None, e));
                    continue;
                }
            };
            if let Some((name, _)) = answer.headers.iter().find(|(name, value)| !valid_header(name, value)) {
                let error = format!("plugin {} answered chat/params with a bad header {name:?}", plugin.spec.name);
                records.push(failed(&plugin, Hook::ChatParams, None, error));
                continue;
            }
            let mut changes = Vec::new();
            if let Some(extra) = answer.system.filter(|s| !s.trim().is_empty()) {
                request.system.push_str("\n\n");
                request.system.push_str(&extra);
                changes.push("added to the system prompt".to_owned());
            }
            if let Some(t) = answer.temperature.filter(|t| Some(*t) != request.temperature) {
                request.temperature = Some(t);
                changes.push(format!("set the temperature to {t}"));
            }
            if !answer.headers.is_empty() {
                changes
                    .push(format!("added headers {}", answer.headers.keys().cloned().collect::<Vec<_>>().join(", ")));
                for (name, value) in answer.headers {
                    // A header a plugin adds is as likely a credential as one config holds.
                    crate::secret::remember(&value);
                    request.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
                    request.headers.push((name, value));
                }
            }
            if !changes.is_empty() {
                records.push(acted(&plugin, Hook::ChatParams, None, changes.join("; "), None));
            }
        }
    }

    /// `permission/ask`: the first plugin that decides answers for the user; `None` asks the user.
    pub async fn permission_ask(
        &self,
        params: PermissionAskParams,
        records: &mut Records,
    ) -> Option<(PermissionAnswer, String)> {
        for (plugin, peer) in self.hooked(Hook::PermissionAsk) {
            let call_id = Some(params.call_id.as_str());
            match ask::<PermissionAsk>(&plugin, &peer, &params).await {
                Err(e) => records.push(failed(&plugin, Hook::PermissionAsk, call_id, e)),
                Ok(answer) => {
                    if let Some(decision) = answer.decision {
                        let reason = answer.message.unwrap_or_default();
                        let word = match decision {
                            PermissionAnswer::Allow => "allowed",
                            PermissionAnswer::Deny => "denied",
                        };
                        let change = if reason.is_empty() { word.to_owned() } else { format!("{word}: {reason}") };
                        records.push(acted(&plugin, Hook::PermissionAsk, call_id, change, None));
                        let said = format!("plugin {} {word} it{}", plugin.spec.name, suffix(&reason));
                        return Some((decision, said));
                    }
                }
            }
        }
        None
    }
}

fn suffix(reason: &str) -> String {
    if reason.is_empty() { String::new() } else { format!(": {reason}") }
}

fn valid_header(name: &str, value: &str) -> bool {
    reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
        && reqwest::header::HeaderValue::from_str(value).is_ok()
}

/// `EventHookParams` as sent: the stored event borrowed, not parsed.
#[derive(Serialize)]
struct EventOut<'a> {
    event: keel_protocol::event::Event<&'a RawValue>,
}

/// Sends every committed event to the plugins with an `event` hook, until the host goes. A plugin that stops
/// reading misses events rather than holding up the others.
pub fn forward_events(host: Weak<Host>, mut committed: broadcast::Receiver<Arc<crate::store::Event>>) {
    tokio::spawn(async move {
        loop {
            let event = match committed.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("plugins' event hook missed {n} events");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let Some(hooked) = host.upgrade().map(|h| h.hooked(Hook::Event)) else { return };
            if hooked.is_empty() {
                continue;
            }
            let params = EventOut { event: event.wire() };
            for (plugin, peer) in hooked {
                if let Err(e) = peer.notify_within(EventHook::NAME, &params, EVENT_STALL).await {
                    tracing::debug!(plugin = %plugin.spec.name, "event not delivered: {e}");
                }
            }
        }
    });
}
