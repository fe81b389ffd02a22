//! Applies `migrations/NNNN_*.sql` in order, claimed across processes.
//!
//! The claim is SQLite's own write lock: the whole run is one `BEGIN IMMEDIATE` transaction that reads
//! `PRAGMA user_version`, applies what is missing and bumps the version. A second engine starting at the same moment
//! waits on the lock (busy timeout) and then finds nothing left to do.

use rusqlite::{Connection, TransactionBehavior};

use super::Error;

/// Every migration, in order. `migrations_match_folder` keeps this list and the folder in step.
pub(super) const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../migrations/0001_init.sql")),
    ("0002_agent", include_str!("../../migrations/0002_agent.sql")),
    ("0003_permissions", include_str!("../../migrations/0003_permissions.sql")),
    ("0004_ownership", include_str!("../../migrations/0004_ownership.sql")),
    ("0005_compaction", include_str!("../../migrations/0005_compaction.sql")),
    ("0006_jobs", include_str!("../../migrations/0006_jobs.sql")),
];

pub(super) fn migrate(conn: &mut Connection) -> Result<(), Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let applied: usize = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if applied > MIGRATIONS.len() {
        return Err(Error::SchemaTooNew { found: applied, known: MIGRATIONS.len() });
    }
    for (name, sql) in &MIGRATIONS[applied..] {
        tx.execute_batch(sql).map_err(|source| Error::Migration { name, source })?;
    }
    if applied < MIGRATIONS.len() {
        tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_match_folder() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|(n, _)| format!("{n}.sql")).collect();
        assert_eq!(files, listed);
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }
}
