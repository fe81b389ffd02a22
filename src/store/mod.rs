//! The event store: the per-session event log and the read models projected from it, on SQLite (embedded, the
//! default) or PostgreSQL (shared by several engines).
//!
//! `append` is the only way state changes: one transaction, serialized with every other write to the session (by
//! any engine), takes the next seq, inserts the events and updates the projections; only after the commit are the
//! session's subscribers woken. The logic here and in the read-model modules is written once against `db::Db`;
//! `sqlite` and `postgres` only open transactions and carry wakes between engines.

pub mod approvals;
mod column;
pub mod context;
pub mod db;
mod feed;
pub mod inputs;
pub mod jobs;
pub(crate) mod lease;
mod migrate;
mod postgres;
mod projection;
pub mod sessions;
mod sqlite;
pub mod transcript;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_protocol::catalogue::{DecodeError, EventBody, EventKind};
use serde_json::value::RawValue;

use db::{Db, params};

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
    #[error("database: {0}")]
    Postgres(String),
    #[error("the commit failed: {0}")]
    Commit(String),
    #[error("PostgreSQL: {0}")]
    Connect(String),
    #[error("column {idx} is not {expected}")]
    Column { idx: usize, expected: &'static str },
    #[error("event data: {0}")]
    Json(#[from] serde_json::Error),
    #[error("event {seq} of session {session_id}: {source}")]
    Decode { session_id: String, seq: u64, source: DecodeError },
    #[error("migration {name} failed: {reason}")]
    Migration { name: &'static str, reason: String },
    #[error("the database is at schema version {found}, newer than this engine knows ({known}); upgrade keel")]
    SchemaTooNew { found: usize, known: usize },
    #[error("another engine took over session {0}")]
    LeaseLost(String),
    #[error("cannot create {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<tokio_postgres::Error> for Error {
    /// The server's own message and SQLSTATE where there is one: the error's `Display` alone says "db error".
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(match e.as_db_error() {
            Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
            None => match std::error::Error::source(&e) {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            },
        })
    }
}

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
    /// The event in its wire shape, borrowing its data: nothing is parsed or copied.
    pub fn wire(&self) -> keel_protocol::event::Event<&RawValue> {
        keel_protocol::event::Event {
            session_id: self.session_id.clone(),
            seq: self.seq,
            kind: self.kind.as_str().to_owned(),
            version: self.version,
            at: self.at,
            data: &self.data,
        }
    }

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
    backend: Backend,
    feeds: Feeds,
}

enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

const INSERT_EVENT: &str =
    "INSERT INTO events (session_id, seq, type, version, data, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const SELECT_EVENTS: &str = "SELECT session_id, seq, type, version, data, at FROM events";

impl Store {
    /// The embedded store: a SQLite file, created with its directory when missing.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self { backend: Backend::Sqlite(sqlite::Sqlite::open(path)?), feeds: Feeds::default() })
    }

    /// The shared store: a PostgreSQL database (`postgres://user@host/db`), migrated on first use.
    pub fn connect(url: &str) -> Result<Self> {
        Ok(Self { backend: Backend::Postgres(postgres::Postgres::connect(url)?), feeds: Feeds::default() })
    }

    /// `keel serve --store` and `store.url`: a `postgres://` or `postgresql://` URL, or a SQLite file's path.
    pub fn at(location: &str) -> Result<Self> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Self::connect(location)
        } else {
            Self::open(Path::new(location.strip_prefix("sqlite://").unwrap_or(location)))
        }
    }

    /// Every event this engine commits from now on, in commit order per session; a receiver that lags loses the
    /// oldest.
    pub fn committed(&self) -> tokio::sync::broadcast::Receiver<Arc<Event>> {
        self.feeds.committed()
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
        decide: impl FnOnce(&dyn Db) -> Result<(Vec<NewEvent>, T)>,
    ) -> Result<(Vec<Arc<Event>>, T)> {
        self.write(
            Some(session_id),
            |tx| {
                let (events, decided) = decide(tx)?;
                Ok((append_in(tx, session_id, events)?, decided))
            },
            |(appended, _)| self.feeds.publish(session_id, appended),
        )
    }

    /// One write transaction, serialized with every other write to `session`; `after_commit` runs once it is
    /// durable, in commit order among this engine's writes to the session.
    fn write<T>(
        &self,
        session: Option<&str>,
        f: impl FnOnce(&dyn Db) -> Result<T>,
        after_commit: impl FnOnce(&T),
    ) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(b) => b.write(f, after_commit),
            Backend::Postgres(b) => b.write(session, f, after_commit),
        }
    }

    /// Reads through a pooled connection; for queries of the read models that live outside this module.
    pub fn query<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        self.read(f)
    }

    fn read<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(b) => b.read(f),
            Backend::Postgres(b) => b.read(f),
        }
    }

    /// Creates `new_id` as a copy of `source`'s history up to `at_seq` (default: its head), in one transaction.
    /// The copied events keep their seqs; the fork's own `session.created` replaces the source's first event.
    pub fn fork(&self, source: &str, at_seq: Option<u64>, new_id: &str, created: NewEvent) -> Result<SessionRow> {
        self.write(Some(new_id), |tx| fork_in(tx, source, at_seq, new_id, created), |_| {})
    }

    /// Up to `limit` events after `after_seq`, in seq order.
    pub fn events_after(&self, session_id: &str, after_seq: u64, limit: usize) -> Result<Vec<Event>> {
        self.read(|db| {
            db.rows(
                &format!("{SELECT_EVENTS} WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"),
                params![session_id, after_seq, limit],
                read_event,
            )
        })
    }

    /// The events of one activity, from its `activity.opened` to the head; what recovery reads.
    pub fn activity_events(&self, session_id: &str, activity_id: &str) -> Result<Vec<Event>> {
        // Newest first: the activity looked for is nearly always the latest one opened.
        let opened = self.read(|db| {
            let mut found = None;
            db.query(
                "SELECT seq, data FROM events WHERE session_id = ?1 AND type = ?2 ORDER BY seq DESC",
                params![session_id, EventKind::ActivityOpened.as_str()],
                &mut |mut row| {
                    let (seq, data): (u64, String) = (row.get(0)?, row.get(1)?);
                    let opened: serde_json::Value = serde_json::from_str(&data)?;
                    if opened["activityId"] == activity_id {
                        found = Some(seq);
                    }
                    Ok(found.is_none())
                },
            )?;
            Ok(found)
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
        self.read(|db| head_seq(db, session_id))
    }

    pub fn session(&self, session_id: &str) -> Result<Option<SessionRow>> {
        self.read(|db| sessions::get(db, session_id))
    }

    /// Sessions, most recently updated first, continuing after `cursor`.
    pub fn sessions(
        &self,
        filter: &SessionFilter<'_>,
        cursor: Option<&SessionCursor>,
        limit: usize,
    ) -> Result<Vec<SessionRow>> {
        self.read(|db| sessions::list(db, filter, cursor, limit))
    }

    /// The session's feed, whose head is at least every seq committed before this call.
    pub fn feed(&self, session_id: &str) -> Result<Arc<Feed>> {
        let feed = self.feeds.open(session_id, 0);
        let head = self.head(session_id)?.ok_or_else(|| Error::SessionNotFound(session_id.to_owned()))?;
        feed.advance(head);
        Ok(feed)
    }

    /// Watches for commits by other engines and wakes the feeds they touched; `every` is how often SQLite is
    /// polled, and PostgreSQL's fallback poll (at least a second: it is told by notifications).
    pub async fn watch_other_writers(self: Arc<Self>, every: Duration) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(b) => b.watch_other_writers(&self.feeds, every).await,
            Backend::Postgres(b) => b.watch_other_writers(&self.feeds, every).await,
        }
    }
}

/// Inserts events after the session's head with their projections; the heart of every append.
fn append_in(tx: &dyn Db, session_id: &str, events: Vec<NewEvent>) -> Result<Vec<Arc<Event>>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let creates = events.first().is_some_and(|e| e.kind() == EventKind::SessionCreated);
    let mut seq = match (head_seq(tx, session_id)?, creates) {
        (Some(_), true) => return Err(Error::SessionExists(session_id.to_owned())),
        (None, false) => return Err(Error::SessionNotFound(session_id.to_owned())),
        (Some(head), false) => head,
        (None, true) => 0,
    };
    let at = now_millis();
    let mut appended = Vec::with_capacity(events.len());
    for NewEvent { body, data } in events {
        seq += 1;
        let event = insert_event(tx, session_id, seq, at, &body, data)?;
        appended.push(Arc::new(event));
    }
    tx.execute("UPDATE sessions SET head_seq = ?2, updated_at = ?3 WHERE id = ?1", params![session_id, seq, at])?;
    tx.appended(session_id, seq)?;
    Ok(appended)
}

fn insert_event(
    tx: &dyn Db,
    session_id: &str,
    seq: u64,
    at: i64,
    body: &EventBody,
    data: Box<RawValue>,
) -> Result<Event> {
    let kind = body.kind();
    tx.execute(INSERT_EVENT, params![session_id, seq, kind.as_str(), kind.version(), data.get(), at])?;
    let event = Event { session_id: session_id.to_owned(), seq, kind, version: kind.version(), at, data };
    projection::apply(tx, &event, body)?;
    Ok(event)
}

fn fork_in(tx: &dyn Db, source: &str, at_seq: Option<u64>, new_id: &str, created: NewEvent) -> Result<SessionRow> {
    let head = head_seq(tx, source)?.ok_or_else(|| Error::SessionNotFound(source.to_owned()))?;
    let at_seq = at_seq.unwrap_or(head);
    if at_seq == 0 || at_seq > head {
        return Err(Error::SeqOutOfRange { session_id: source.to_owned(), at_seq, head });
    }
    let at = now_millis();
    let NewEvent { body, data } = created;
    insert_event(tx, new_id, 1, at, &body, data)?;
    let copied = tx.rows(
        &format!("{SELECT_EVENTS} WHERE session_id = ?1 AND seq > 1 AND seq <= ?2 ORDER BY seq"),
        params![source, at_seq],
        read_event,
    )?;
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
        tx.execute(
            INSERT_EVENT,
            params![new_id, event.seq, event.kind.as_str(), event.version, event.data.get(), event.at],
        )?;
        projection::apply(tx, &event, &body)?;
    }
    // A fork copies no running work: an activity open at `at_seq` is closed in the fork, so that no engine takes
    // the copy for a crash to recover.
    let mut head = at_seq;
    for NewEvent { body, data } in fork_closing(tx, new_id)? {
        head += 1;
        insert_event(tx, new_id, head, at, &body, data)?;
    }
    tx.execute("UPDATE sessions SET head_seq = ?2, updated_at = ?3 WHERE id = ?1", params![new_id, head, at])?;
    sessions::get(tx, new_id)?.ok_or_else(|| Error::SessionNotFound(new_id.to_owned()))
}

/// What closes the activity a fork copied while it ran: its unsettled calls fail, its questions are withdrawn.
fn fork_closing(conn: &dyn Db, session_id: &str) -> Result<Vec<NewEvent>> {
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

/// The seq of the session's newest event, read on `db` (inside a transaction, say).
pub fn head_seq(db: &dyn Db, session_id: &str) -> Result<Option<u64>> {
    db.value("SELECT head_seq FROM sessions WHERE id = ?1", params![session_id])
}

fn read_event(row: &mut db::Row) -> Result<Event> {
    let session_id: String = row.get(0)?;
    let seq = row.get(1)?;
    let kind: String = row.get(2)?;
    let kind = kind.parse().map_err(|source| Error::Decode { session_id: session_id.clone(), seq, source })?;
    let data = RawValue::from_string(row.get(4)?)?;
    Ok(Event { session_id, seq, kind, version: row.get(3)?, at: row.get(5)?, data })
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
