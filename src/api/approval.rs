//! Approvals on the wire: `approval/respond`, and the server→client `approval/request` sent to every connection
//! that follows the session and declared `capabilities.approvals`. The first answer wins; the other connections'
//! requests are withdrawn with `$/cancelRequest`.

use super::client::Client;
use std::sync::Arc;
use std::time::Duration;

use keel_protocol::Empty;
use keel_protocol::Method;
use keel_protocol::approval::{Approval, ApprovalAnswer, ApprovalRequest, ApprovalRespondParams, Decision};

use super::ApiError;
use crate::engine::Engine;
use crate::rpc::{Call, PeerRef};
use crate::session::approval::ApprovalError;
use crate::store::approvals::ApprovalRow;

/// How long a client may take to answer; the approval itself stays pending in the log whatever happens.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

pub async fn respond(engine: Arc<Engine>, p: ApprovalRespondParams, call: Call) -> Result<Empty, ApiError> {
    let by = call.peer.lifecycle().client_name;
    record(&engine, &p.approval_id, p.decision, p.message, &by)?;
    Ok(Empty {})
}

fn record(
    engine: &Arc<Engine>,
    approval_id: &str,
    decision: Decision,
    message: Option<String>,
    by: &str,
) -> Result<(), ApiError> {
    engine.answer_approval(approval_id, decision.into(), message, if by.is_empty() { "client" } else { by }).map_err(
        |e| match e {
            ApprovalError::NotFound(_) | ApprovalError::AlreadyResolved(_) => ApiError::ApprovalGone(e.to_string()),
        },
    )
}

pub fn to_wire(row: ApprovalRow) -> Approval {
    Approval {
        approval_id: row.approval_id,
        session_id: row.session_id,
        call_id: row.call_id,
        tool: row.tool,
        action: row.action,
        resources: row.resources,
        title: row.title,
    }
}

/// Asks this connection about an approval, if it takes approvals and follows the session; records its answer.
pub fn deliver(engine: &Arc<Engine>, peer: &PeerRef, row: ApprovalRow) {
    let lifecycle = peer.lifecycle();
    let client = Client::of(peer);
    // A subagent's calls are asked of whoever follows the session that started it.
    let attached = || engine.lineage(&row.session_id).iter().any(|s| client.is_attached(s));
    if !client.capabilities().approvals || !attached() {
        return;
    }
    let engine = Arc::clone(engine);
    let peer = Arc::clone(peer);
    tokio::spawn(async move {
        let key = row.approval_id.clone();
        let approval = to_wire(row);
        let Some(answer) = peer.request_withdrawable(&key, ApprovalRequest::NAME, &approval, ANSWER_TIMEOUT).await
        else {
            return;
        };
        let Ok(answer) = answer else { return };
        match serde_json::from_value::<ApprovalAnswer>(answer) {
            Ok(a) => {
                // A later answer than someone else's is simply not the one recorded.
                let _ = record(&engine, &key, a.decision, a.message, &lifecycle.client_name);
            }
            Err(e) => tracing::error!(connection = peer.id(), "unreadable answer to approval {key}: {e}"),
        }
    });
}

/// Re-asks a connection that (re)subscribed about the session's approvals still pending.
pub fn replay_pending(engine: &Arc<Engine>, peer: &PeerRef, session_id: &str) {
    if !Client::of(peer).capabilities().approvals {
        return;
    }
    let pending = engine.pending_approvals(session_id).unwrap_or_default();
    for row in pending {
        deliver(engine, peer, row);
    }
}
