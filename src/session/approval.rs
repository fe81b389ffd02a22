//! The permission gate in front of every tool call, and durable approvals.
//!
//! A call that the rules put on `ask` appends `approval.requested` and waits. The answer can come from any client
//! (a response to `approval/request`, or `approval/respond`), from `keel run --approve`, from an `always` rule
//! answered meanwhile, or from an interrupt; the first one recorded wins. If the engine stops while an approval
//! waits, the question stays in the log: answering it later wakes the session, and recovery runs the call.

use keel_protocol::approval::{ApprovalRequestedData, ApprovalResolvedData, Resolved};
use keel_protocol::catalogue::EventBody;
use keel_protocol::plugin::{Hook, PermissionAnswer, PermissionAskParams};
use keel_protocol::session::SessionStatus;
use keel_protocol::turn::StatusData;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Error, Notice, Services, event};
use crate::config::PermissionRule;
use crate::permission::{self, Access, Verdict};
use crate::provider::ToolCall;
use crate::store::{NewEvent, approvals};
use crate::tool::{Decoded, Tool, ToolContext};

/// How a call refused by a `deny` rule is reported to the model (and recognised by `keel run`'s summary).
pub const DENIED_BY_RULES: &str = "denied by the permission rules";

/// What the gate decided for a call.
pub enum Gate {
    Run,
    /// The call does not run; this is its result for the model.
    Refuse(String),
    Interrupted,
    /// The engine is shutting down: the question stays pending in the log, and the call waits for its answer
    /// through the next engine's recovery.
    Suspended,
}

/// An answer as the waiting call receives it.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub decision: Resolved,
    pub message: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApprovalError {
    #[error("approval {0} not found")]
    NotFound(String),
    #[error("approval {0} was already answered")]
    AlreadyResolved(String),
}

/// Checks the call against the rules (the turn's config rules, then the project's stored ones, read now so that an
/// `always` given earlier in the turn counts) and, when they say ask, asks and waits for the answer. The question
/// is asked once `answered` fires (the model's answer ended and is recorded), so that an engine that stops while
/// the question waits leaves a turn whose outcome is known.
#[allow(clippy::too_many_arguments)]
pub async fn authorize(
    services: &Services,
    tool: &dyn Tool,
    call: &ToolCall,
    input: &Decoded,
    ctx: &ToolContext,
    repeated: bool,
    configured: &TurnRules,
    answered: &CancellationToken,
) -> Result<Gate, Error> {
    let (session_id, cancel) = (ctx.session_id.as_str(), &ctx.cancel);
    let cwd = ctx.cwd.display().to_string();
    let mut accesses = match tool.access(input, ctx) {
        Ok(accesses) => accesses,
        Err(e) => return Ok(Gate::Refuse(e.to_string())),
    };
    if repeated {
        accesses.push(Access { action: "doom_loop", resources: vec![call.name.clone()] });
    }
    let stored = services.store.query(|c| approvals::project_rules(c, &cwd))?;
    let rules = permission::rules_with_agent(&configured.config, stored, &configured.agent);
    let (action, resources) = match permission::check(&rules, &accesses) {
        Verdict::Allow => return Ok(Gate::Run),
        Verdict::Deny { action, resource } => {
            return Ok(Gate::Refuse(format!("{DENIED_BY_RULES}: {action} {resource}")));
        }
        Verdict::Ask { action, resources } => (action, resources),
    };
    if services.plugins.has(Hook::PermissionAsk) {
        let asked = PermissionAskParams {
            session_id: session_id.to_owned(),
            call_id: call.id.clone(),
            tool: call.name.clone(),
            action: action.clone(),
            resources: resources.clone(),
        };
        let mut hooked = Vec::new();
        let decided = services.plugins.permission_ask(asked, &mut hooked).await;
        if !hooked.is_empty() {
            services.append_events(session_id, hooked.into_iter().map(event).collect::<Result<Vec<_>, _>>()?)?;
        }
        match decided {
            Some((PermissionAnswer::Allow, _)) => return Ok(Gate::Run),
            Some((PermissionAnswer::Deny, said)) => return Ok(Gate::Refuse(said)),
            None => {}
        }
    }
    tokio::select! {
        _ = answered.cancelled() => {}
        _ = ctx.cancel.cancelled() => return Ok(Gate::Interrupted),
    }
    let approval_id = format!("apr_{}", uuid::Uuid::now_v7().simple());
    let title = match action.as_str() {
        "doom_loop" => format!("{} was called three times in a row with the same input; let it run again?", call.name),
        "external_directory" => format!("{} wants to reach outside the workspace: {}", call.name, resources.join(", ")),
        _ if action == call.name => format!("{}: {}", call.name, resources.join(", ")),
        _ => format!("{} ({action}): {}", call.name, resources.join(", ")),
    };
    let (tx, rx) = oneshot::channel();
    services.waiters().lock().insert(approval_id.clone(), tx);
    // However this wait ends (answer, interrupt, the drain failing), the waiter goes; an answer recorded after that
    // wakes the session instead, and recovery settles the call.
    let _waiter = WaiterGuard { services, approval_id: &approval_id };
    let requested = ApprovalRequestedData {
        approval_id: approval_id.clone(),
        call_id: call.id.clone(),
        tool: call.name.clone(),
        action,
        resources,
        title,
        options: vec!["once".into(), "always".into(), "reject".into()],
    };
    let appended = services.append_events(
        session_id,
        vec![
            event(EventBody::ApprovalRequested(requested))?,
            event(EventBody::SessionStatus(StatusData { status: SessionStatus::WaitingApproval }))?,
        ],
    );
    if let Err(e) = appended {
        services.waiters().lock().remove(&approval_id);
        return Err(e);
    }
    if let Some(row) = services.store.query(|c| approvals::get(c, &approval_id))? {
        let _ = services.notices.send(Notice::ApprovalRequested(row));
    }
    let resolution = tokio::select! {
        answer = rx => answer.ok(),
        _ = cancel.cancelled() => None,
        _ = services.shutdown.cancelled() => return Ok(Gate::Suspended),
    };
    let Some(resolution) = resolution else {
        services.waiters().lock().remove(&approval_id);
        // A cancellation never wakes anyone: there is no call left to run.
        let _ = resolve(services, &approval_id, Resolved::Cancelled, None, "interrupt", &|_| {});
        return Ok(Gate::Interrupted);
    };
    services.append_events(
        session_id,
        vec![event(EventBody::SessionStatus(StatusData { status: SessionStatus::Running }))?],
    )?;
    Ok(gate_for(&resolution))
}

/// The rules a turn's calls are checked against besides the project's stored ones.
#[derive(Debug, Clone, Default)]
pub struct TurnRules {
    pub config: Vec<PermissionRule>,
    /// The running agent's, which win over every other.
    pub agent: Vec<PermissionRule>,
}

struct WaiterGuard<'a> {
    services: &'a Services,
    approval_id: &'a str,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.services.waiters().lock().remove(self.approval_id);
    }
}

/// What a recorded answer means for its call.
pub fn gate_for(resolution: &Resolution) -> Gate {
    match resolution.decision {
        Resolved::Once | Resolved::Always => Gate::Run,
        Resolved::Reject => Gate::Refuse(match &resolution.message {
            Some(message) => format!("the user rejected this call: {message}"),
            None => "the user rejected this call".into(),
        }),
        Resolved::Cancelled => Gate::Interrupted,
    }
}

fn rules_for(services: &Services, cwd: &str) -> Result<Vec<PermissionRule>, Error> {
    let config = services.config(Some(cwd));
    let stored = services.store.query(|c| approvals::project_rules(c, cwd))?;
    Ok(permission::rules_for(&config.permissions, stored))
}

/// Records an answer. The first answer wins; later ones get `AlreadyResolved`. `always` stores allow rules for the
/// project and answers the session's other pending approvals that those rules now cover. `wake` is called with the
/// session of an answered call that no process waits for (it restarted), so that its next run settles the call.
pub fn resolve(
    services: &Services,
    approval_id: &str,
    decision: Resolved,
    message: Option<String>,
    by: &str,
    wake: &dyn Fn(&str),
) -> Result<(), ApprovalError> {
    let not_found = || ApprovalError::NotFound(approval_id.to_owned());
    let row = services.store.query(|c| approvals::get(c, approval_id)).ok().flatten().ok_or_else(not_found)?;
    let data = ApprovalResolvedData {
        approval_id: approval_id.to_owned(),
        decision,
        by: by.to_owned(),
        message: message.clone(),
    };
    let appended = services.store.append_with(&row.session_id, |conn| match approvals::get(conn, approval_id)? {
        Some(current) if current.state == approvals::ApprovalState::Pending => {
            Ok((vec![NewEvent::new(EventBody::ApprovalResolved(data))?], true))
        }
        _ => Ok((Vec::new(), false)),
    });
    match appended {
        Ok((_, true)) => {}
        Ok((_, false)) => return Err(ApprovalError::AlreadyResolved(approval_id.to_owned())),
        Err(e) => {
            tracing::error!("recording the answer to {approval_id} failed: {e}");
            return Err(not_found());
        }
    }
    let _ = services
        .notices
        .send(Notice::ApprovalResolved { session_id: row.session_id.clone(), approval_id: approval_id.to_owned() });
    let waiter = services.waiters().lock().remove(approval_id);
    match waiter {
        Some(waiter) => {
            let _ = waiter.send(Resolution { decision, message });
        }
        // Nobody waits in this process (it restarted): the session's next run settles the call.
        None if decision != Resolved::Cancelled => {
            wake(&row.session_id);
        }
        None => {}
    }
    if decision == Resolved::Always {
        resolve_covered(services, &row.session_id, wake);
    }
    Ok(())
}

fn resolve_covered(services: &Services, session_id: &str, wake: &dyn Fn(&str)) {
    let Ok(Some(session)) = services.store.session(session_id) else { return };
    let Ok(rules) = rules_for(services, &session.cwd) else { return };
    let pending = services.store.query(|c| approvals::pending(c, session_id)).unwrap_or_default();
    for approval in pending {
        let covered = approval
            .resources
            .iter()
            .all(|r| permission::rules::evaluate(&rules, &approval.action, r) == crate::config::Effect::Allow);
        if covered {
            let _ = resolve(services, &approval.approval_id, Resolved::Once, None, "rule", wake);
        }
    }
}
