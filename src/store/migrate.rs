//! Applies the schema migrations in order, claimed across processes: `migrations/NNNN_*.sql` on SQLite,
//! `migrations/postgres/NNNN_*.sql` on PostgreSQL.
//!
//! On SQLite the claim is its own write lock: the whole run is one `BEGIN IMMEDIATE` transaction that reads
//! `PRAGMA user_version`, applies what is missing and bumps the version. On PostgreSQL it is a session-level
//! advisory lock held while each missing migration commits with its version in `keel_schema`. Either way a second
//! engine starting at the same moment waits and then finds nothing left to do.

use rusqlite::{Connection, TransactionBehavior};

use super::Error;
use super::db::{Db, params};

/// Every SQLite migration, in order. `migrations_match_folder` keeps this list and the folder in step.
pub(super) const SQLITE: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../migrations/0001_init.sql")),
    ("0002_agent", include_str!("../../migrations/0002_agent.sql")),
    ("0003_permissions", include_str!("../../migrations/0003_permissions.sql")),
    ("0004_ownership", include_str!("../../migrations/0004_ownership.sql")),
    ("0005_compaction", include_str!("../../migrations/0005_compaction.sql")),
    ("0006_jobs", include_str!("../../migrations/0006_jobs.sql")),
    ("0007_part_status", include_str!("../../migrations/0007_part_status.sql")),
    ("0008_reasoning_effort", include_str!("../../migrations/0008_reasoning_effort.sql")),
];

/// Every PostgreSQL migration, in order.
pub(super) const POSTGRES: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../migrations/postgres/0001_init.sql")),
    ("0002_reasoning_effort", include_str!("../../migrations/postgres/0002_reasoning_effort.sql")),
];

/// The advisory lock that claims PostgreSQL migrations (any constant no other lock of keel's uses: session locks
/// are hashes of session ids, taken per transaction).
const MIGRATION_LOCK: i64 = 0x6b65_656c_6d69_6772;

pub(super) fn sqlite(conn: &mut Connection) -> Result<(), Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let applied: usize = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if applied > SQLITE.len() {
        return Err(Error::SchemaTooNew { found: applied, known: SQLITE.len() });
    }
    for (name, sql) in &SQLITE[applied..] {
        tx.execute_batch(sql).map_err(|source| Error::Migration { name, reason: source.to_string() })?;
    }
    if applied < SQLITE.len() {
        tx.pragma_update(None, "user_version", SQLITE.len())?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn postgres(conn: &super::postgres::Conn) -> Result<(), Error> {
    conn.execute("SELECT pg_advisory_lock(?1)", params![MIGRATION_LOCK])?;
    let result = (|| {
        conn.batch("CREATE TABLE IF NOT EXISTS keel_schema (version BIGINT NOT NULL)")?;
        let db: &dyn Db = conn;
        let applied: usize = db.value("SELECT max(version) FROM keel_schema", params![])?.flatten().unwrap_or(0);
        if applied > POSTGRES.len() {
            return Err(Error::SchemaTooNew { found: applied, known: POSTGRES.len() });
        }
        for (version, (name, sql)) in POSTGRES.iter().enumerate().skip(applied) {
            let run = || {
                conn.batch("BEGIN")?;
                conn.batch(sql)?;
                conn.execute("INSERT INTO keel_schema (version) VALUES (?1)", params![version + 1])?;
                conn.batch("COMMIT")
            };
            if let Err(e) = run() {
                let _ = conn.batch("ROLLBACK");
                return Err(Error::Migration { name, reason: e.to_string() });
            }
        }
        Ok(())
    })();
    conn.execute("SELECT pg_advisory_unlock(?1)", params![MIGRATION_LOCK])?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(dir: &str) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn migrations_match_folder() {
        let names = |list: &[(&str, &str)]| list.iter().map(|(n, _)| format!("{n}.sql")).collect::<Vec<_>>();
        assert_eq!(listed(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")), names(SQLITE));
        assert_eq!(listed(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres")), names(POSTGRES));
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        sqlite(&mut conn).unwrap();
        sqlite(&mut conn).unwrap();
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, SQLITE.len());
    }
}
