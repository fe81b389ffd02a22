//! The embedded backend: one SQLite file in WAL mode, one writer connection and a pool of readers.
//!
//! Writes run in `BEGIN IMMEDIATE` transactions: SQLite's own write lock is what serializes writers, also those of
//! other engine processes on the same file, so a seq read inside one is the head.
//!
//! Group commit: writes that arrive while another is in its transaction join that transaction, each inside its own
//! savepoint (a failing write rolls back only itself), and whoever finishes last commits for all. Every write is
//! still atomic with its projections and gapless within its session; concurrent sessions share the cost of a commit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, ValueRef};

use super::db::{Db, Param, Row, Value};
use super::{Error, Result, feed::Feeds, migrate};

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes one transaction takes at most before it commits, however many more are waiting to join.
const MAX_BATCH: usize = 512;

pub(super) struct Sqlite {
    path: PathBuf,
    writer: Mutex<Writer>,
    /// Writers that have arrived and not yet done their work: while any is left, the open batch waits for it.
    joining: AtomicUsize,
    /// How far batches have ended, apart from the writer: a committed batch's writers wait on it without taking
    /// the writer lock, which the next batch needs.
    ended: Mutex<Ended>,
    /// Signalled when a batch ends.
    batch_ended: Condvar,
    readers: Mutex<Vec<Connection>>,
}

struct Writer {
    conn: Connection,
    /// The batch whose transaction is open; batches are numbered from 1.
    open: Option<u64>,
    next: u64,
    /// Writes done in the open batch.
    size: usize,
}

#[derive(Default)]
struct Ended {
    /// Every batch up to this one has ended.
    upto: u64,
    /// The newest batch whose commit failed, and why.
    failed: Option<(u64, String)>,
}

/// A writer counted in `joining` until its work is done, also when that work panics (else the batch would wait for
/// it forever).
struct Arrival<'a>(Option<&'a AtomicUsize>);

impl<'a> Arrival<'a> {
    fn new(joining: &'a AtomicUsize) -> Self {
        joining.fetch_add(1, Ordering::SeqCst);
        Self(Some(joining))
    }

    /// How many other writers are still to do their work.
    fn done(mut self) -> usize {
        self.0.take().map_or(0, |joining| joining.fetch_sub(1, Ordering::SeqCst) - 1)
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        if let Some(joining) = self.0.take() {
            joining.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Writer {
    /// Runs `f` inside the open batch (opening one when none is), in a savepoint of its own.
    fn run<T>(&mut self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<(u64, T)> {
        let batch = match self.open {
            Some(batch) => batch,
            None => {
                self.conn.execute_batch("BEGIN IMMEDIATE")?;
                self.next += 1;
                self.open = Some(self.next);
                self.next
            }
        };
        self.size += 1;
        let savepoint = self.conn.savepoint()?;
        let result = f(&*savepoint)?;
        savepoint.commit()?;
        Ok((batch, result))
    }

    /// Commits the open batch: its number, and why it failed if it did.
    fn commit(&mut self) -> Option<(u64, Option<String>)> {
        let batch = self.open.take()?;
        self.size = 0;
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => Some((batch, None)),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Some((batch, Some(e.to_string())))
            }
        }
    }
}

impl Sqlite {
    pub(super) fn open(path: &Path) -> Result<Self> {
        private_files(path)?;
        let mut conn = connect(path)?;
        retry_busy(|| migrate::sqlite(&mut conn))?;
        let writer = Writer { conn, open: None, next: 0, size: 0 };
        Ok(Self {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            joining: AtomicUsize::new(0),
            ended: Mutex::new(Ended::default()),
            batch_ended: Condvar::new(),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// One write, atomic, in the transaction of its batch; `after_commit` runs once the batch committed.
    pub(super) fn write<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>, after_commit: impl FnOnce(&T)) -> Result<T> {
        let arrival = Arrival::new(&self.joining);
        let mut writer = self.writer.lock();
        let result = writer.run(f);
        let others = arrival.done();
        if (others == 0 || writer.size >= MAX_BATCH)
            && let Some((batch, failure)) = writer.commit()
        {
            // Still under the writer lock, so that batches are recorded as ended in commit order.
            let mut ended = self.ended.lock();
            ended.upto = batch;
            if let Some(reason) = failure {
                ended.failed = Some((batch, reason));
            }
            self.batch_ended.notify_all();
        }
        drop(writer);
        let (batch, value) = result?;
        let mut ended = self.ended.lock();
        self.batch_ended.wait_while(&mut ended, |e| e.upto < batch);
        if let Some((failed, reason)) = &ended.failed
            && *failed == batch
        {
            return Err(Error::Commit(reason.clone()));
        }
        drop(ended);
        after_commit(&value);
        Ok(value)
    }

    pub(super) fn read<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let result = f(&conn);
        self.readers.lock().push(conn);
        result
    }

    /// Watches for commits by other processes and wakes the feeds they touched.
    /// `PRAGMA data_version` changes whenever another connection commits, so an idle engine costs one cheap query
    /// per interval.
    pub(super) async fn watch_other_writers(&self, feeds: &Feeds, every: Duration) -> Result<()> {
        let conn = connect(&self.path)?;
        // No baseline: what others committed before this watcher started is caught up on its first look.
        let mut last: Option<i64> = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let live = feeds.live();
            if live.is_empty() {
                continue;
            }
            let version: i64 = conn.pragma_query_value(None, "data_version", |r| r.get(0))?;
            if last == Some(version) {
                continue;
            }
            last = Some(version);
            for feed in live {
                match super::head_seq(&conn, feed.session_id())? {
                    Some(head) => feed.advance(head),
                    None => feed.mark_deleted(),
                }
            }
        }
    }
}

impl Db for Connection {
    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        let mut stmt = self.prepare_cached(sql)?;
        for (i, param) in params.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, param)?;
        }
        Ok(stmt.raw_execute()? as u64)
    }

    fn query(&self, sql: &str, params: &[Param<'_>], each: &mut dyn FnMut(Row) -> Result<bool>) -> Result<()> {
        let mut stmt = self.prepare_cached(sql)?;
        for (i, param) in params.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, param)?;
        }
        let columns = stmt.column_count();
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for idx in 0..columns {
                values.push(match row.get_ref(idx)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(i) => Value::Int(i),
                    ValueRef::Real(f) => Value::Real(f),
                    ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(
                        String::from_utf8(t.to_vec()).map_err(|_| Error::Column { idx, expected: "UTF-8 text" })?,
                    ),
                });
            }
            if !each(Row(values))? {
                break;
            }
        }
        Ok(())
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Param::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(i)),
            Param::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(f)),
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

pub(super) fn connect(path: &Path) -> Result<Connection> {
    retry_busy(|| {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // The projections alone have some thirty statements; rusqlite's default cache holds sixteen.
        conn.set_prepared_statement_cache_capacity(128);
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
