//! The durable inbox: admission of prompts (queue or steer), idempotent by input id, decided and appended in one
//! transaction so that two racing admissions of one id cannot both win.

use keel_protocol::catalogue::EventBody;
use keel_protocol::input::{ContentPart, Delivery, Disposition, InputKind};
use keel_protocol::turn::{InputAdmittedData, InputRemovedData};

use super::Error;
use crate::store::{self, NewEvent, Store, inputs};

pub struct NewInput {
    pub input_id: Option<String>,
    pub delivery: Delivery,
    pub input: Vec<ContentPart>,
    pub agent: Option<String>,
    pub model: Option<String>,
    pub kind: InputKind,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub input_id: String,
    pub delivery: Delivery,
    pub disposition: Disposition,
    pub admitted_seq: u64,
}

pub fn admit(store: &Store, session_id: &str, new: NewInput) -> Result<Receipt, Error> {
    if new.input.is_empty() && new.kind.is_prompt() {
        return Err(Error::InvalidParam { path: "input", reason: "must hold at least one part".into() });
    }
    let input_id = new.input_id.clone().unwrap_or_else(|| format!("inp_{}", uuid::Uuid::now_v7().simple()));
    let (appended, existing) = store.append_with(session_id, |conn| {
        let session =
            store::sessions::get(conn, session_id)?.ok_or_else(|| store::Error::SessionNotFound(session_id.into()))?;
        let mut data = InputAdmittedData {
            input_id: input_id.clone(),
            delivery: new.delivery,
            disposition: Disposition::Started,
            input: new.input,
            agent: new.agent,
            model: new.model,
            kind: new.kind,
        };
        if let Some(existing) = inputs::get(conn, session_id, &input_id)? {
            return Ok((Vec::new(), Some((existing, data.fingerprint()))));
        }
        let pending = inputs::pending(conn, session_id)?;
        let queue_ahead = pending.iter().any(|i| i.delivery == Delivery::Queue);
        data.disposition = match (session.active_activity.is_some(), new.delivery) {
            (true, Delivery::Steer) => Disposition::Steered,
            (true, Delivery::Queue) => Disposition::Queued,
            (false, Delivery::Queue) if queue_ahead => Disposition::Queued,
            (false, _) => Disposition::Started,
        };
        Ok((vec![NewEvent::new(EventBody::InputAdmitted(data))?], None))
    })?;
    if let Some((existing, fingerprint)) = existing {
        if existing.fingerprint != fingerprint {
            return Err(Error::Conflict(format!("input {input_id} was already admitted with other content")));
        }
        return Ok(Receipt {
            input_id,
            delivery: existing.delivery,
            disposition: existing.disposition,
            admitted_seq: existing.admitted_seq,
        });
    }
    let event = appended.first().ok_or_else(|| Error::Conflict("nothing was admitted".into()))?;
    let EventBody::InputAdmitted(data) = event.body()? else {
        return Err(Error::Conflict("the admission recorded another event".into()));
    };
    Ok(Receipt { input_id, delivery: data.delivery, disposition: data.disposition, admitted_seq: event.seq })
}

/// Removes a pending input; false when it is not pending (promoted, removed, or unknown).
pub fn remove(store: &Store, session_id: &str, input_id: &str) -> Result<bool, Error> {
    let (appended, ()) = store.append_with(session_id, |conn| {
        let pending = inputs::get(conn, session_id, input_id)?.is_some_and(|i| i.state == inputs::InputState::Pending);
        let events = if pending {
            vec![NewEvent::new(EventBody::InputRemoved(InputRemovedData { input_id: input_id.into() }))?]
        } else {
            Vec::new()
        };
        Ok((events, ()))
    })?;
    Ok(!appended.is_empty())
}
