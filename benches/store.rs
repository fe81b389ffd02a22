//! `cargo bench --bench store`: the store on both backends. Prints, asserts only that every event arrived once.
//!
//! - raw SQLite single-row transactions on this machine, the ceiling of one-transaction-per-append;
//! - appends for 1 and 100 sessions on SQLite and PostgreSQL, one after another and from 100 threads at once (the
//!   concurrent case is where SQLite's group commit shares a transaction among sessions);
//! - three `keel serve` engines on one PostgreSQL database, 100 subscribers spread over them, writes spread over
//!   them: the time until every subscriber has every event, each once and in order.
//!
//! PostgreSQL comes from `KEEL_TEST_POSTGRES` or a throwaway cluster (tests/common/postgres.rs); without one its
//! figures are skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{call, line, renamed};
use keel::store::Store;
use serde_json::{Value, json};

fn main() {
    let short = std::env::var_os("KEEL_BENCH_SHORT").is_some();
    let n = if short { 3_000 } else { 30_000 };
    let dir = tempfile::tempdir().unwrap();
    println!("keel store benchmark ({} cores)", std::thread::available_parallelism().map_or(1, |n| n.get()));

    println!(
        "raw SQLite, 1 row per transaction:                      {}",
        rate(n, raw_sqlite(&dir.path().join("raw.db"), n))
    );
    let sqlite = dir.path().join("keel.db");
    appends("sqlite", &|| Store::open(&sqlite).unwrap(), n);
    match postgres::fresh_database() {
        Some(url) => {
            appends("postgres", &|| Store::connect(&url).unwrap(), n / 3);
            let url = postgres::fresh_database().unwrap();
            engines_on_one_database(&url, dir.path(), if short { 200 } else { 1_000 });
        }
        None => println!("postgres: skipped (no PostgreSQL on this machine)"),
    }
}

fn rate(n: usize, took: Duration) -> String {
    format!("{:>9.0} events/s", n as f64 / took.as_secs_f64())
}

fn raw_sqlite(path: &Path, n: usize) -> Duration {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch("CREATE TABLE t (k TEXT NOT NULL, v TEXT NOT NULL)").unwrap();
    let t = Instant::now();
    for i in 0..n {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn.prepare_cached("INSERT INTO t (k, v) VALUES (?1, ?2)").unwrap().execute(["s", &format!("{i}")]).unwrap();
        conn.execute_batch("COMMIT").unwrap();
    }
    t.elapsed()
}

fn appends(backend: &str, open: &dyn Fn() -> Store, n: usize) {
    let store = Arc::new(open());
    let (one, hundred) = common::appends_one_after_another(&store, n);
    println!("{backend:>8}: append, 1 session, one after another:       {}", rate(n, one));
    println!("{backend:>8}: append, 100 sessions, one after another:    {}", rate(n, hundred));
    let sessions: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();

    let t = Instant::now();
    let threads: Vec<_> = sessions
        .iter()
        .map(|s| {
            let (store, s) = (Arc::clone(&store), s.clone());
            std::thread::spawn(move || {
                for i in 0..n / 100 {
                    store.append(&s, vec![renamed(i)]).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    println!("{backend:>8}: append, 100 sessions, 100 threads at once:  {}", rate(n / 100 * 100, t.elapsed()));
}

const INIT: &str =
    r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":1,"clientInfo":{"name":"bench"}}}"#;

fn engines_on_one_database(url: &str, dir: &Path, events: usize) {
    let engines: Vec<(Child, std::path::PathBuf)> = (0..3)
        .map(|i| {
            let home = dir.join(format!("engine{i}"));
            std::fs::create_dir_all(&home).unwrap();
            let socket = home.join("keel.sock");
            let child = Command::new(common::keel_bin())
                .args(["serve", "--store", url, "--listen", &format!("unix:{}", socket.display())])
                .env("KEEL_HOME", &home)
                .env("KEEL_LOG", "error")
                .spawn()
                .unwrap();
            (child, socket)
        })
        .collect();
    let connect = |socket: &Path| {
        while UnixStream::connect(socket).is_err() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = UnixStream::connect(socket).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        writeln!(w, "{INIT}").unwrap();
        line(&mut r);
        (w, r)
    };
    let mut writers: Vec<_> = engines.iter().map(|(_, socket)| connect(socket)).collect();
    let (w, r) = &mut writers[0];
    let session = call(w, r, 1, "session/create", json!({ "cwd": dir }))["session"]["id"].as_str().unwrap().to_owned();
    let subscribers = 100;
    let mut readers = Vec::new();
    for i in 0..subscribers {
        let (mut sw, mut sr) = connect(&engines[i % 3].1);
        call(&mut sw, &mut sr, 1, "session/subscribe", json!({ "sessionId": session, "afterSeq": -1 }));
        line(&mut sr); // synced
        readers.push(std::thread::spawn(move || {
            let _keep = sw;
            let mut seqs = Vec::with_capacity(events);
            while seqs.len() < events {
                let message: Value = serde_json::from_str(&line(&mut sr)).unwrap();
                if message["method"] == "session/event" {
                    seqs.push(message["params"]["event"]["seq"].as_u64().unwrap());
                }
            }
            (Instant::now(), seqs)
        }));
    }
    let t = Instant::now();
    for i in 0..events {
        let (w, r) = &mut writers[i % 3];
        call(w, r, 10 + i as u64, "session/update", json!({ "sessionId": session, "title": format!("t{i}") }));
    }
    let writes_done = t.elapsed();
    let mut last = t;
    for reader in readers {
        let (done, seqs) = reader.join().unwrap();
        assert_eq!(seqs, (2..2 + events as u64).collect::<Vec<_>>(), "a subscriber missed or repeated an event");
        last = last.max(done);
    }
    let took = last - t;
    println!(
        "postgres: 3 engines, {events} events (writes spread over them) to {subscribers} subscribers (spread too): \
         {:.0} ms until all had all, each once ({} delivered; writes alone {:.0} ms)",
        took.as_secs_f64() * 1e3,
        rate(events * subscribers, took).trim(),
        writes_done.as_secs_f64() * 1e3
    );
    for (mut child, _) in engines {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
