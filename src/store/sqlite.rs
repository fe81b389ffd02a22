//! The embedded backend: one SQLite file in WAL mode, one writer connection and a pool of readers.
//!
//! A write is one `BEGIN IMMEDIATE` transaction: SQLite's own write lock is what serializes writers, also those of
//! other engine processes on the same file, so a seq read inside it is the head.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use super::db::{Db, Param, Row, Value};
use super::{Error, Result, feed::Feeds, migrate};

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Sqlite {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl Sqlite {
    pub(super) fn open(path: &Path) -> Result<Self> {
        private_files(path)?;
        let mut writer = connect(path)?;
        retry_busy(|| migrate::sqlite(&mut writer))?;
        Ok(Self { path: path.to_owned(), writer: Mutex::new(writer), readers: Mutex::new(Vec::new()) })
    }

    /// One write transaction; `after_commit` runs still under the writer lock, so that what it publishes is seen
    /// in commit order.
    pub(super) fn write<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>, after_commit: impl FnOnce(&T)) -> Result<T> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let result = f(&*tx)?;
        tx.commit()?;
        after_commit(&result);
        Ok(result)
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
        let mut last: i64 = conn.pragma_query_value(None, "data_version", |r| r.get(0))?;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let live = feeds.live();
            if live.is_empty() {
                continue;
            }
            let version: i64 = conn.pragma_query_value(None, "data_version", |r| r.get(0))?;
            if version == last {
                continue;
            }
            last = version;
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
