//! The shared backend: PostgreSQL, for teams that run several engines (on several machines) on one database.
//!
//! Every write transaction first takes a transaction-level advisory lock keyed by its session: seq assignment,
//! check-then-append decisions and leases then behave per session as they do under SQLite's single writer, across
//! every engine. A commit that moved a session's head sends `NOTIFY keel_events` with `"<seq> <session id>"`; engines
//! `LISTEN` and wake that session's subscribers, who then read from their own cursors, so a lost notification costs
//! latency, never an event. A slow poll of the watched sessions covers a listener that is down.
//!
//! The store's API is synchronous (SQLite answers in microseconds); the connections here are driven by a runtime
//! on a thread of their own, and a caller blocks on its statement's answer as it would on SQLite's disk. The
//! engine's own runtime never drives them, so a caller blocking one of its workers cannot stall them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::Duration;

use bytes::BytesMut;
use futures_executor::block_on;
use parking_lot::{Condvar, Mutex};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

use super::db::{Db, Param, Row, Value, params};
use super::{Error, Result, feed::Feeds, migrate};

/// Connections one engine opens at most; callers beyond wait for one to come back.
const MAX_CONNECTIONS: usize = 16;
const CHANNEL: &str = "keel_events";
/// Events read at most per wake into a feed's ring; subscribers further behind read the store themselves.
const SHARED_READ: usize = 256;

pub(super) struct Postgres {
    config: tokio_postgres::Config,
    driver: tokio::runtime::Handle,
    /// Dropping it ends the driver thread, and with it every connection.
    _stop: tokio::sync::oneshot::Sender<()>,
    idle: Mutex<Vec<Conn>>,
    open: Mutex<usize>,
    returned: Condvar,
}

impl Postgres {
    pub(super) fn connect(url: &str) -> Result<Self> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| Error::Connect(format!("{e}")))?;
        // The password is known from here on: no event, log line or answer shows it.
        if let Some(password) = config.get_password() {
            crate::secret::remember(&String::from_utf8_lossy(password));
        }
        let (driver, stop) = driver_thread()?;
        let pg = Self {
            config,
            driver,
            _stop: stop,
            idle: Mutex::new(Vec::new()),
            open: Mutex::new(0),
            returned: Condvar::new(),
        };
        migrate::postgres(&*pg.checkout()?)?;
        Ok(pg)
    }

    /// One write transaction, serialized with every other write to `session` (by any engine); `after_commit` runs
    /// once it is durable.
    pub(super) fn write<T>(
        &self,
        session: Option<&str>,
        f: impl FnOnce(&dyn Db) -> Result<T>,
        after_commit: impl FnOnce(&T),
    ) -> Result<T> {
        let conn = self.checkout()?;
        conn.notify.take();
        // One round trip each for the opening (with the session's lock) and the commit (with the wake): a write is
        // a handful of round trips, and these two are in every one.
        match session {
            Some(session) => conn.batch(&format!("BEGIN; SELECT pg_advisory_xact_lock({})", lock_key(session)))?,
            None => conn.batch("BEGIN")?,
        }
        let result = (|| {
            let result = f(&*conn)?;
            match conn.notify.take() {
                Some(payload) => conn.batch(&format!("SELECT pg_notify('{CHANNEL}', {}); COMMIT", quoted(&payload)))?,
                None => conn.batch("COMMIT")?,
            }
            Ok(result)
        })();
        match &result {
            Ok(result) => after_commit(result),
            Err(_) => {
                let _ = conn.batch("ROLLBACK");
            }
        }
        result
    }

    pub(super) fn read<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        let conn = self.checkout()?;
        f(&*conn)
    }

    fn checkout(&self) -> Result<Pooled<'_>> {
        loop {
            if let Some(conn) = self.idle.lock().pop() {
                return Ok(Pooled { pool: self, conn: Some(conn) });
            }
            let mut open = self.open.lock();
            if *open < MAX_CONNECTIONS {
                *open += 1;
                drop(open);
                return match self.open_connection() {
                    Ok(conn) => Ok(Pooled { pool: self, conn: Some(conn) }),
                    Err(e) => {
                        *self.open.lock() -= 1;
                        Err(e)
                    }
                };
            }
            self.returned.wait_for(&mut open, Duration::from_millis(100));
        }
    }

    fn open_connection(&self) -> Result<Conn> {
        let config = self.config.clone();
        let connecting = self.driver.spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(connection);
            Ok::<_, tokio_postgres::Error>(client)
        });
        let client = block_on(connecting).map_err(|e| Error::Connect(format!("the connection task failed: {e}")))??;
        Ok(Conn { client, statements: RefCell::new(HashMap::new()), notify: RefCell::new(None) })
    }

    /// Listens for other engines' commits and wakes the feeds they touched; polls the watched sessions' heads every
    /// `every` as well, and after each (re)connection, for what a dropped notification or listener missed.
    pub(super) async fn watch_other_writers(&self, feeds: &Feeds, every: Duration) -> Result<()> {
        let every = every.max(Duration::from_secs(1));
        loop {
            match self.listen(feeds, every).await {
                Ok(Listening::Stopped) => return Ok(()),
                Err(e) => {
                    tracing::error!("listening for other engines' commits failed, polling until it reconnects: {e}");
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    async fn listen(&self, feeds: &Feeds, every: Duration) -> Result<Listening> {
        let (client, mut connection) = self.config.connect(NoTls).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut messages = tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_owned()).is_err() {
                            return None;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return Some(e),
                }
            }
            None
        });
        let result = async {
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            self.poll_heads(feeds, None)?;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    payload = rx.recv() => {
                        let Some(payload) = payload else {
                            return match (&mut messages).await {
                                // The runtime is shutting down.
                                Err(e) if e.is_cancelled() => Ok(Listening::Stopped),
                                Ok(Some(e)) => Err(e.into()),
                                _ => Err(Error::Connect("the listener's connection closed".into())),
                            };
                        };
                        let mut moved = vec![payload];
                        while let Ok(more) = rx.try_recv() {
                            moved.push(more);
                        }
                        self.poll_heads(feeds, Some(&moved))?;
                    }
                    _ = tick.tick() => self.poll_heads(feeds, None)?,
                }
            }
        }
        .await;
        messages.abort();
        result
    }

    /// Reads the heads of the watched sessions (of those named in `moved`, when given, that the feed has not seen
    /// yet) and advances their feeds.
    fn poll_heads(&self, feeds: &Feeds, moved: Option<&[String]>) -> Result<()> {
        let stale: Vec<_> = match moved {
            None => feeds.live(),
            Some(payloads) => payloads
                .iter()
                .filter_map(|p| p.split_once(' '))
                .filter_map(|(seq, id)| Some((seq.parse::<u64>().ok()?, feeds.get(id)?)))
                .filter(|(seq, feed)| *seq > feed.head())
                .map(|(_, feed)| feed)
                .collect(),
        };
        if stale.is_empty() {
            return Ok(());
        }
        self.read(|db| {
            for feed in stale {
                let Some(head) = super::head_seq(db, feed.session_id())? else {
                    feed.mark_deleted();
                    continue;
                };
                // What another engine appended is read once here and put in the feed's ring, which every local
                // subscriber reads from, instead of once per subscriber.
                let seen = feed.head();
                if head > seen {
                    let events = db.rows(
                        &format!("{} WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3", super::SELECT_EVENTS),
                        params![feed.session_id(), seen, SHARED_READ],
                        super::read_event,
                    )?;
                    feed.publish(&events.into_iter().map(std::sync::Arc::new).collect::<Vec<_>>());
                }
                feed.advance(head);
            }
            Ok(())
        })
    }
}

enum Listening {
    Stopped,
}

/// A connection checked out of the pool; back in it when dropped, unless it broke.
struct Pooled<'a> {
    pool: &'a Postgres,
    conn: Option<Conn>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        // Only `drop` takes it.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if conn.client.is_closed() {
            *self.pool.open.lock() -= 1;
        } else {
            self.pool.idle.lock().push(conn);
        }
        self.pool.returned.notify_one();
    }
}

pub(super) struct Conn {
    client: Client,
    /// Prepared once per connection, keyed by the store's SQL text.
    statements: RefCell<HashMap<String, Statement>>,
    /// The wake the open transaction sends with its commit: `"<head> <session id>"`.
    notify: RefCell<Option<String>>,
}

impl Conn {
    /// Runs statements through the simple protocol: transaction control and migrations.
    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        Ok(block_on(self.client.batch_execute(sql))?)
    }

    fn statement(&self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = block_on(self.client.prepare(&placeholders(sql)))?;
        self.statements.borrow_mut().insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

fn bound<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Db for Conn {
    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64> {
        let statement = self.statement(sql)?;
        Ok(block_on(self.client.execute(&statement, &bound(params)))?)
    }

    fn query(&self, sql: &str, params: &[Param<'_>], each: &mut dyn FnMut(Row) -> Result<bool>) -> Result<()> {
        let statement = self.statement(sql)?;
        for row in block_on(self.client.query(&statement, &bound(params)))? {
            let values = (0..row.len()).map(|i| row.try_get::<_, Value>(i)).collect::<Result<Vec<_>, _>>()?;
            if !each(Row(values))? {
                break;
            }
        }
        Ok(())
    }

    fn appended(&self, session_id: &str, head: u64) -> Result<()> {
        *self.notify.borrow_mut() = Some(format!("{head} {session_id}"));
        Ok(())
    }
}

/// A string literal (standard-conforming: only quotes are doubled).
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `?N` → `$N`, outside quoted text.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '?' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// The advisory lock of a session: a stable 64-bit hash of its id (FNV-1a). Two ids that collide only serialize
/// their writes.
fn lock_key(session_id: &str) -> i64 {
    let hash =
        session_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// A thread running the runtime that drives every pooled connection.
fn driver_thread() -> Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>)> {
    let (ready, handle) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("keel-postgres".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            if ready.send(Ok((runtime.handle().clone(), stop))).is_ok() {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            }
        })
        .map_err(|e| Error::Connect(format!("cannot start the driver thread: {e}")))?;
    let started = handle.recv().map_err(|_| Error::Connect("the PostgreSQL driver thread did not start".into()))?;
    started.map_err(|e| Error::Connect(format!("cannot start the driver's runtime: {e}")))
}

type BoxError = Box<dyn StdError + Sync + Send>;

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match (*self, ty) {
            (Param::Null, _) => Ok(IsNull::Yes),
            (Param::Int(i), &Type::INT8) => i.to_sql(ty, out),
            (Param::Int(i), &Type::INT4) => i32::try_from(i)?.to_sql(ty, out),
            (Param::Int(i), &Type::INT2) => i16::try_from(i)?.to_sql(ty, out),
            (Param::Int(i), &Type::BOOL) => (i != 0).to_sql(ty, out),
            #[allow(clippy::cast_precision_loss)]
            (Param::Int(i), &Type::FLOAT8) => (i as f64).to_sql(ty, out),
            (Param::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (Param::Int(i), _) if is_text(ty) => i.to_string().to_sql(ty, out),
            (Param::Text(s), _) if is_text(ty) => s.to_sql(ty, out),
            (param, ty) => Err(format!("cannot bind {param:?} as {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn is_text(ty: &Type) -> bool {
    matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN)
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => Value::Int(i64::from(i16::from_sql(ty, raw)?)),
            Type::BOOL => Value::Int(i64::from(bool::from_sql(ty, raw)?)),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f64::from(f32::from_sql(ty, raw)?)),
            _ if is_text(ty) => Value::Text(String::from_sql(ty, raw)?),
            _ => return Err(format!("a column of type {ty} is not one keel reads").into()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_quotes() {
        assert_eq!(
            placeholders("SELECT '?1' FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1' FROM t WHERE a = $1 AND b = $12"
        );
    }

    #[test]
    fn lock_keys_are_stable() {
        assert_eq!(lock_key("s1"), lock_key("s1"));
        assert_ne!(lock_key("s1"), lock_key("s2"));
    }
}
