//! The event store: SQLite (WAL) holding the per-session event log and the read models projected from it.
//!
//! `append` is the only way state changes: one `BEGIN IMMEDIATE` transaction takes the next seq, inserts the
//! events and updates the projections; only after the commit are the session's subscribers woken.
//! The immediate transaction is also what keeps seqs gapless when several engine processes share one database.

pub mod approvals;
mod column;
pub mod context;
mod feed;
pub mod inputs;
pub mod jobs;
pub(crate) mod lease;
mod migrate;
mod projection;
pub mod sessions;
pub mod transcript;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_protocol::catalogue::{DecodeError, EventBody, EventKind};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::value::RawValue;

pub use feed::Feed;
pub use lease::{Fence, Unowned};
pub use projection::PRUNED_OUTPUT;
pub use sessions::{SessionCursor, SessionFilter, SessionRow};

use feed::Feeds;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("session {0} not found")]
    SessionNotFound(String),
    #[error("session {0} already exists")]
    SessionExists(String),
    #[error("seq {at_seq} is past the head of session {session_id} ({head})")]
    SeqOutOfRange { session_id: String, at_seq: u64, head: u64 },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("event data: {0}")]
    Json(#[from] serde_json::Error),
    #[error("event {seq} of session {session_id}: {source}")]
    Decode { session_id: String, seq: u64, source: DecodeError },
    #[error("migration {name} failed: {source}")]
    Migration { name: &'static str, source: rusqlite::Error },
    #[error("the database is at schema version {found}, newer than this engine knows ({known}); upgrade keel")]
    SchemaTooNew { found: usize, known: usize },
    #[error("another engine took over session {0}")]
    LeaseLost(String),
    #[error("cannot create {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stored event. `data` stays serialized: replay sends it on without parsing it; readers that need the payload
/// decode it once with `body`.
#[derive(Debug, Clone)]
pub struct Event {
    pub session_id: String,
    pub seq: u64,
    pub kind: EventKind,
    pub version: u32,
    pub at: i64,
    pub data: Box<RawValue>,
}

impl Event {
    /// The typed payload; an event this engine cannot read is an error naming it.
    pub fn body(&self) -> Result<EventBody> {
        EventBody::decode(self.kind, self.version, self.data.get()).map_err(|source| Error::Decode {
            session_id: self.session_id.clone(),
            seq: self.seq,
            source,
        })
    }
}

/// An event to append; the store gives it its seq and time. Built from a typed body only, so its kind, version and
/// data always agree with the catalogue.
#[derive(Debug)]
pub struct NewEvent {
    body: EventBody,
    data: Box<RawValue>,
}

impl NewEvent {
    /// The one gate every recorded text passes (provider output, tool output, errors): known secrets are
    /// scrubbed from the data, and the body is read back from the scrubbed data so that projections agree.
    pub fn new(body: EventBody) -> Result<Self> {
        let data = body.encode()?;
        if let Cow::Owned(scrubbed) = crate::secret::scrub(data.get()) {
            let kind = body.kind();
            let body = EventBody::decode(kind, kind.version(), &scrubbed).map_err(|source| Error::Decode {
                session_id: String::new(),
                seq: 0,
                source,
            })?;
            return Ok(Self { data: RawValue::from_string(scrubbed)?, body });
        }
        Ok(Self { data, body })
    }

    /// An event in its wire form (`type` and `data`), checked against the catalogue: for imports and tests that
    /// write a log by hand.
    pub fn from_wire(kind: &str, data: &serde_json::Value) -> Result<Self> {
        let kind: EventKind =
            kind.parse().map_err(|source| Error::Decode { session_id: String::new(), seq: 0, source })?;
        let body = EventBody::decode(kind, kind.version(), &data.to_string()).map_err(|source| Error::Decode {
            session_id: String::new(),
            seq: 0,
            source,
        })?;
        Self::new(body)
    }

    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }
}

pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    feeds: Feeds,
}

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        private_files(path)?;
        let mut writer = connect(path)?;
        retry_busy(|| migrate::migrate(&mut writer))?;
        Ok(Self {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            feeds: Feeds::default(),
        })
    }

    /// Appends events to one session in one transaction and wakes its subscribers after the commit.
    /// The first event of a new session must be `session.created`.
    pub fn append(&self, session_id: &str, events: Vec<NewEvent>) -> Result<Vec<Arc<Event>>> {
        Ok(self.append_with(session_id, |_| Ok((events, ())))?.0)
    }

    /// Like `append`, but `decide` first reads the database inside the same transaction and chooses the events,
    /// so that check-then-append (idempotent admission, say) is atomic, also across processes.
    pub fn append_with<T>(
        &self,
        session_id: &str,
        decide: impl FnOnce(&Connection) -> Result<(Vec<NewEvent>, T)>,
    ) -> Result<(Vec<Arc<Event>>, T)> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (events, decided) = decide(&tx)?;
        if events.is_empty() {
            return Ok((Vec::new(), decided));
        }
        let creates = events.first().is_some_and(|e| e.kind() == EventKind::SessionCreated);
        let head = head_seq(&tx, session_id)?;
        let mut seq = match (head, creates) {
            (Some(_), true) => return Err(Error::SessionExists(session_id.to_owned())),
            (None, false) => return Err(Error::SessionNotFound(session_id.to_owned())),
            (Some(head), false) => head,
            (None, true) => 0,
        };
        let at = now_millis();
        let mut appended = Vec::with_capacity(events.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (session_id, seq, type, version, data, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for NewEvent { body, data } in events {
                seq += 1;
                let kind = body.kind();
                insert.execute(params![session_id, seq, kind.as_str(), kind.version(), data.get(), at])?;
                let event = Event { session_id: session_id.to_owned(), seq, kind, version: kind.version(), at, data };
                projection::apply(&tx, &event, &body)?;
                appended.push(Arc::new(event));
            }
        }
        tx.prepare_cached("UPDATE sessions SET head_seq = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![session_id, seq, at])?;
        tx.commit()?;
        // Still under the writer lock, so feeds see batches in commit order.
        self.feeds.publish(session_id, &appended);
        Ok((appended, decided))
    }

    /// One write transaction that appends no event (leases).
    fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let result = f(&tx)?;
        tx.commit()?;
        Ok(result)
    }

    /// Reads through a pooled connection; for queries of the read models that live outside this module.
    pub fn query<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.read(f)
    }

    /// Creates `new_id` as a copy of `source`'s history up to `at_seq` (default: its head), in one transaction.
    /// The copied events keep their seqs; the fork's own `session.created` replaces the source's first event.
    pub fn fork(&self, source: &str, at_seq: Option<u64>, new_id: &str, created: NewEvent) -> Result<SessionRow> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let head = head_seq(&tx, source)?.ok_or_else(|| Error::SessionNotFound(source.to_owned()))?;
        let at_seq = at_seq.unwrap_or(head);
        if at_seq == 0 || at_seq > head {
            return Err(Error::SeqOutOfRange { session_id: source.to_owned(), at_seq, head });
        }
        let at = now_millis();
        let NewEvent { body, data } = created;
        let kind = body.kind();
        let created = Event { session_id: new_id.to_owned(), seq: 1, kind, version: kind.version(), at, data };
        tx.execute(
            "INSERT INTO events (session_id, seq, type, version, data, at) VALUES (?1, 1, ?2, ?3, ?4, ?5)",
            params![new_id, kind.as_str(), created.version, created.data.get(), at],
        )?;
        projection::apply(&tx, &created, &body)?;
        let copied = {
            let mut select = tx.prepare(
                "SELECT session_id, seq, type, version, data, at FROM events \
                 WHERE session_id = ?1 AND seq > 1 AND seq <= ?2 ORDER BY seq",
            )?;
            let rows = select.query_map(params![source, at_seq], read_event)?;
            rows.collect::<rusqlite::Result<Vec<Event>>>()?
        };
        for mut event in copied {
            let mut body = event.body()?;
            event.session_id = new_id.to_owned();
            // Approval ids are unique across sessions: the fork's copies get their own.
            let approval_id = match &mut body {
                EventBody::ApprovalRequested(d) => Some(&mut d.approval_id),
                EventBody::ApprovalResolved(d) => Some(&mut d.approval_id),
                _ => None,
            };
            if let Some(id) = approval_id {
                *id = format!("{id}.{new_id}");
                event.data = body.encode()?;
            }
            tx.prepare_cached(
                "INSERT INTO events (session_id, seq, type, version, data, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                new_id,
                event.seq,
                event.kind.as_str(),
                event.version,
                event.data.get(),
                event.at
            ])?;
            projection::apply(&tx, &event, &body)?;
        }
        // A fork copies no running work: an activity open at `at_seq` is closed in the fork, so that no engine takes
        // the copy for a crash to recover.
        let mut head = at_seq;
        for NewEvent { body, data } in fork_closing(&tx, new_id)? {
            head += 1;
            let kind = body.kind();
            tx.prepare_cached(
                "INSERT INTO events (session_id, seq, type, version, data, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![new_id, head, kind.as_str(), kind.version(), data.get(), at])?;
            let event = Event { session_id: new_id.to_owned(), seq: head, kind, version: kind.version(), at, data };
            projection::apply(&tx, &event, &body)?;
        }
        tx.execute("UPDATE sessions SET head_seq = ?2, updated_at = ?3 WHERE id = ?1", params![new_id, head, at])?;
        let row = sessions::get(&tx, new_id)?.ok_or_else(|| Error::SessionNotFound(new_id.to_owned()))?;
        tx.commit()?;
        Ok(row)
    }

    /// Up to `limit` events after `after_seq`, in seq order.
    pub fn events_after(&self, session_id: &str, after_seq: u64, limit: usize) -> Result<Vec<Event>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT session_id, seq, type, version, data, at FROM events \
                 WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![session_id, after_seq, limit], read_event)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The events of one activity, from its `activity.opened` to the head; what recovery reads.
    pub fn activity_events(&self, session_id: &str, activity_id: &str) -> Result<Vec<Event>> {
        let opened: Option<u64> = self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT seq FROM events WHERE session_id = ?1 AND type = ?2 \
                     AND json_extract(data, '$.activityId') = ?3 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row(params![session_id, EventKind::ActivityOpened.as_str(), activity_id], |r| r.get(0))
                .optional()?)
        })?;
        let Some(opened) = opened else { return Ok(Vec::new()) };
        let mut events = Vec::new();
        loop {
            let page = self.events_after(session_id, opened - 1 + events.len() as u64, 1024)?;
            if page.is_empty() {
                return Ok(events);
            }
            events.extend(page);
        }
    }

    /// The seq of the session's newest event, or `None` when the session does not exist.
    pub fn head(&self, session_id: &str) -> Result<Option<u64>> {
        self.read(|conn| head_seq(conn, session_id))
    }

    pub fn session(&self, session_id: &str) -> Result<Option<SessionRow>> {
        self.read(|conn| sessions::get(conn, session_id))
    }

    /// Sessions, most recently updated first, continuing after `cursor`.
    pub fn sessions(
        &self,
        filter: &SessionFilter<'_>,
        cursor: Option<&SessionCursor>,
        limit: usize,
    ) -> Result<Vec<SessionRow>> {
        self.read(|conn| sessions::list(conn, filter, cursor, limit))
    }

    /// The session's feed, whose head is at least every seq committed before this call.
    pub fn feed(&self, session_id: &str) -> Result<Arc<Feed>> {
        let feed = self.feeds.open(session_id, 0);
        let head = self.head(session_id)?.ok_or_else(|| Error::SessionNotFound(session_id.to_owned()))?;
        feed.advance(head);
        Ok(feed)
    }

    /// Watches for commits by other processes and wakes the feeds they touched.
    /// `PRAGMA data_version` changes whenever another connection commits, so an idle engine costs one cheap query
    /// per interval.
    pub async fn watch_other_writers(self: Arc<Self>, every: Duration) -> Result<()> {
        let conn = connect(&self.path)?;
        let mut last: i64 = conn.pragma_query_value(None, "data_version", |r| r.get(0))?;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let feeds = self.feeds.live();
            if feeds.is_empty() {
                continue;
            }
            let version: i64 = conn.pragma_query_value(None, "data_version", |r| r.get(0))?;
            if version == last {
                continue;
            }
            last = version;
            for feed in feeds {
                match head_seq(&conn, feed.session_id())? {
                    Some(head) => feed.advance(head),
                    None => feed.mark_deleted(),
                }
            }
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let result = f(&conn);
        self.readers.lock().push(conn);
        result
    }
}

fn connect(path: &Path) -> Result<Connection> {
    retry_busy(|| {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // In WAL mode NORMAL is durable against process crashes (SIGKILL); only a power loss can drop the last
        // commits.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(conn)
    })
}

/// Retries `f` while SQLite reports the database busy or locked. The busy timeout covers ordinary waits, but not
/// every case while several engines start on a new database at once: switching it to WAL and WAL recovery can
/// answer SQLITE_BUSY without waiting.
fn retry_busy<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match f() {
            Err(Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// What closes the activity a fork copied while it ran: its unsettled calls fail, its questions are withdrawn.
fn fork_closing(conn: &Connection, session_id: &str) -> Result<Vec<NewEvent>> {
    use keel_protocol::approval::{ApprovalResolvedData, Resolved};
    use keel_protocol::job::JobFailedData;
    use keel_protocol::session::SessionStatus;
    use keel_protocol::turn::{ActivityClosedData, CloseReason, StatusData, ToolFailedData};
    // A job's process belongs to the source session; the fork only remembers it ran.
    let mut events = Vec::new();
    for job_id in jobs::running(conn, session_id)? {
        let error = "the session was forked while this job ran; it belongs to the source session".to_owned();
        events.push(NewEvent::new(EventBody::JobFailed(JobFailedData { job_id, error }))?);
    }
    let Some(activity_id) = sessions::get(conn, session_id)?.and_then(|s| s.active_activity) else {
        return Ok(events);
    };
    for (call_id, _) in transcript::unsettled_tool_calls(conn, session_id)? {
        let error = "not run: the session was forked before this call finished".to_owned();
        events.push(NewEvent::new(EventBody::ToolFailed(ToolFailedData { call_id, error }))?);
    }
    for approval in approvals::pending(conn, session_id)? {
        events.push(NewEvent::new(EventBody::ApprovalResolved(ApprovalResolvedData {
            approval_id: approval.approval_id,
            decision: Resolved::Cancelled,
            by: "fork".into(),
            message: None,
        }))?);
    }
    events.push(NewEvent::new(EventBody::ActivityClosed(ActivityClosedData {
        activity_id,
        reason: CloseReason::Interrupted,
        error: Some("the session was forked while this activity ran".into()),
    }))?);
    events.push(NewEvent::new(EventBody::SessionStatus(StatusData { status: SessionStatus::Idle }))?);
    Ok(events)
}

/// The seq of the session's newest event, read on `conn` (inside a transaction, say).
pub fn head_seq(conn: &Connection, session_id: &str) -> Result<Option<u64>> {
    Ok(conn
        .prepare_cached("SELECT head_seq FROM sessions WHERE id = ?1")?
        .query_row([session_id], |row| row.get(0))
        .optional()?)
}

fn read_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let data: String = row.get(4)?;
    let data = RawValue::from_string(data)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e)))?;
    let kind: String = row.get(2)?;
    let kind = kind
        .parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(Event { session_id: row.get(0)?, seq: row.get(1)?, kind, version: row.get(3)?, at: row.get(5)?, data })
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The database holds every prompt, answer and tool output: its directory is 0700 and the file 0600 (SQLite gives
/// its WAL and shared-memory files the database file's mode), also when an older keel made them wider.
fn private_files(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io { path: path.to_owned(), source }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(io(path))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(io(&file))?;
        }
    }
    Ok(())
}
