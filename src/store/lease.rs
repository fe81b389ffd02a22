//! Execution leases: at most one engine instance runs a session's agent loop at a time.
//!
//! A lease names its owner (an engine instance id), carries a fencing token that grows with every acquisition of
//! the session, and expires unless renewed. Agent events are appended with the owner's `Fence`, checked inside the
//! append transaction: once another engine has taken the session over, the old owner's writes are refused, however
//! long it was paused. Replay (following a session from a cursor) needs no lease; only execution does.

use std::sync::Arc;
use std::time::Duration;

use super::db::{Db, params};
use super::{Error, Event, NewEvent, Result, Store, now_millis};

/// The proof of ownership that fenced appends carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub session_id: String,
    pub owner: Arc<str>,
    pub token: i64,
}

/// A session that has work and no live owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unowned {
    pub session_id: String,
    /// An activity was left open (by a crash or a shutdown), as opposed to queued input only.
    pub open_activity: bool,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Takes the session's lease for `owner` when nobody holds a live one: the lease is free, expired, or its
    /// holder was a process on this host that no longer exists (a crash needs no wait for the expiry). The token
    /// grows, so that whoever held it before can no longer append. `None`: another engine owns the session.
    pub fn acquire_lease(&self, session_id: &str, owner: &Arc<str>, ttl: Duration) -> Result<Option<Fence>> {
        let here = host();
        let acquire = |tx: &dyn Db| {
            let now = now_millis();
            let held: Option<(String, i64, i64, String, i64)> = tx.row(
                "SELECT owner, token, expires_at, host, pid FROM leases WHERE session_id = ?1",
                params![session_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
            let live = held.as_ref().is_some_and(|(holder, _, expires, host, pid)| {
                *expires > now && **holder != **owner && (*host != here || process_exists(*pid))
            });
            if live {
                return Ok(None);
            }
            if super::head_seq(tx, session_id)?.is_none() {
                return Err(Error::SessionNotFound(session_id.to_owned()));
            }
            let token = held.map_or(1, |(_, token, ..)| token + 1);
            tx.execute(
                "INSERT INTO leases (session_id, owner, token, expires_at, host, pid) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (session_id) DO UPDATE SET owner = ?2, token = ?3, expires_at = ?4, host = ?5, pid = ?6",
                params![session_id, owner, token, now + millis(ttl), here, std::process::id()],
            )?;
            Ok(Some(Fence { session_id: session_id.to_owned(), owner: Arc::clone(owner), token }))
        };
        self.write(Some(session_id), acquire, |_| {})
    }

    /// Extends a held lease. False when it was lost: another engine took the session over.
    pub fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<bool> {
        let renew = |tx: &dyn Db| {
            let renewed = tx.execute(
                "UPDATE leases SET expires_at = ?3 WHERE session_id = ?1 AND token = ?2",
                params![fence.session_id, fence.token, now_millis() + millis(ttl)],
            )?;
            Ok(renewed == 1)
        };
        self.write(Some(&fence.session_id), renew, |_| {})
    }

    /// Gives the lease up unless `has_work` finds work for the session, read in the same transaction: input
    /// admitted by any engine commits either before this (and the owner keeps draining) or after it (and the
    /// admitting engine finds the lease free). True when released.
    pub fn release_lease(&self, fence: &Fence, has_work: impl FnOnce(&dyn Db) -> Result<bool>) -> Result<bool> {
        let release = |tx: &dyn Db| {
            if fenced(tx, fence)? && has_work(tx)? {
                return Ok(false);
            }
            tx.execute(
                "UPDATE leases SET expires_at = 0 WHERE session_id = ?1 AND token = ?2",
                params![fence.session_id, fence.token],
            )?;
            Ok(true)
        };
        self.write(Some(&fence.session_id), release, |_| {})
    }

    /// Appends agent events as the lease holder; `Error::LeaseLost` when another engine has taken the session over.
    pub fn append_fenced(&self, fence: &Fence, events: Vec<NewEvent>) -> Result<Vec<Arc<Event>>> {
        self.append_fenced_with(fence, |_| Ok(events))
    }

    /// `append_fenced` with the events chosen inside the transaction, as `append_with` does.
    pub fn append_fenced_with(
        &self,
        fence: &Fence,
        decide: impl FnOnce(&dyn Db) -> Result<Vec<NewEvent>>,
    ) -> Result<Vec<Arc<Event>>> {
        Ok(self
            .append_with(&fence.session_id, |tx| {
                if !fenced(tx, fence)? {
                    return Err(Error::LeaseLost(fence.session_id.clone()));
                }
                Ok((decide(tx)?, ()))
            })?
            .0)
    }

    /// Sessions with work (an open activity not waiting for a person, or eligible queued input) whose lease is
    /// free, expired, or held by a process of this host that is gone: what startup discovery and the periodic scan
    /// hand to the coordinator.
    pub fn unowned_work(&self) -> Result<Vec<Unowned>> {
        let here = host();
        self.read(|db| {
            let rows = db.rows(
                "SELECT s.id, s.active_activity IS NOT NULL, l.expires_at > ?1 AND l.host = ?2, l.pid \
                 FROM (SELECT id FROM sessions WHERE active_activity IS NOT NULL \
                       UNION SELECT session_id FROM inputs WHERE state = 'pending') AS w \
                 JOIN sessions s ON s.id = w.id LEFT JOIN leases l ON l.session_id = s.id \
                 WHERE (l.expires_at IS NULL OR l.expires_at <= ?1 OR l.host = ?2) AND ( \
                   (s.active_activity IS NOT NULL AND s.status NOT IN ('waiting_approval', 'recovering')) \
                   OR EXISTS (SELECT 1 FROM inputs i WHERE i.session_id = s.id AND i.state = 'pending' \
                              AND (s.queue_paused = 0 OR i.delivery = 'steer')))",
                params![now_millis(), here],
                |r| {
                    let held_here: Option<bool> = r.get(2)?;
                    let pid: Option<i64> = r.get(3)?;
                    Ok((Unowned { session_id: r.get(0)?, open_activity: r.get(1)? }, held_here, pid))
                },
            )?;
            let mut unowned = Vec::new();
            for (session, held_here, pid) in rows {
                if held_here != Some(true) || pid.is_some_and(|pid| !process_exists(pid)) {
                    unowned.push(session);
                }
            }
            Ok(unowned)
        })
    }

    /// The live holder of the session's lease, if any: `(owner, token)`. A holder on this host whose process is
    /// gone is not live.
    pub fn lease_holder(&self, session_id: &str) -> Result<Option<(String, i64)>> {
        let here = host();
        let held: Option<(String, i64, String, i64)> = self.read(|db| {
            db.row(
                "SELECT owner, token, host, pid FROM leases WHERE session_id = ?1 AND expires_at > ?2",
                params![session_id, now_millis()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
        })?;
        Ok(held
            .filter(|(_, _, host, pid)| *host != here || process_exists(*pid))
            .map(|(owner, token, ..)| (owner, token)))
    }
}

/// This machine's name, as lease rows record it.
pub(crate) fn host() -> String {
    let mut name = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, which is what gethostname is told.
    let ok = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } == 0;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    if ok { String::from_utf8_lossy(&name[..end]).into_owned() } else { String::new() }
}

/// Whether a process of this host exists; a recycled pid counts as alive, which only delays a takeover until the
/// lease expires (and fencing makes even a wrong takeover safe).
pub(crate) fn process_exists(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 checks for existence and permission only; nothing is delivered.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    if !alive {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    }
    // A zombie (killed, not yet reaped by its parent) answers signal 0 but runs nothing.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_none_or(|(_, rest)| !rest.starts_with('Z'))
}

/// Whether `fence` is still the session's newest token. An expired lease that nobody took over still fences
/// correctly: only a newer acquisition makes the old token stale.
fn fenced(db: &dyn Db, fence: &Fence) -> Result<bool> {
    let token: Option<i64> = db.value("SELECT token FROM leases WHERE session_id = ?1", params![fence.session_id])?;
    Ok(token == Some(fence.token))
}
