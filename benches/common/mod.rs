//! What the benchmarks share: spawning `keel serve` on pipes, one JSON-RPC call, reading a process's memory.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use keel::store::NewEvent;
use keel_protocol::catalogue::EventBody;
use keel_protocol::event::{SessionCreatedData, SessionUpdatedData};
use serde_json::{Value, json};

pub struct Spawned {
    pub child: Child,
    pub stdin: ChildStdin,
    pub stdout: BufReader<ChildStdout>,
}

/// The keel binary to measure: this build's, or `KEEL_BIN` (another build, to compare two commits run for run).
pub fn keel_bin() -> std::path::PathBuf {
    std::env::var_os("KEEL_BIN").map_or_else(|| env!("CARGO_BIN_EXE_keel").into(), Into::into)
}

/// The release `keel serve` with its own home, quiet on stderr.
pub fn spawn_serve(home: &Path) -> Spawned {
    let mut child = Command::new(keel_bin())
        .arg("serve")
        .env("KEEL_HOME", home)
        .env("KEEL_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    Spawned { child, stdin, stdout }
}

pub fn line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line
}

/// Sends a request and returns its result, skipping the notifications before it.
pub fn call(w: &mut impl Write, r: &mut impl BufRead, id: u64, method: &str, params: Value) -> Value {
    writeln!(w, "{}", json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })).unwrap();
    w.flush().unwrap();
    loop {
        let v: Value = serde_json::from_str(&line(r)).unwrap();
        if v["id"] == id {
            return v["result"].clone();
        }
    }
}

/// A memory figure of a process in KiB: `VmRSS:` now, `VmHWM:` at its peak.
pub fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A `session.created` for the store benchmarks.
pub fn created(ws: &str) -> NewEvent {
    NewEvent::new(EventBody::SessionCreated(SessionCreatedData {
        cwd: ws.into(),
        title: "bench".into(),
        agent: "build".into(),
        model: String::new(),
        parent_id: None,
        forked_from: None,
    }))
    .unwrap()
}

/// A `session.updated` (a new title): the smallest event that still runs a projection.
pub fn renamed(i: usize) -> NewEvent {
    NewEvent::new(EventBody::SessionUpdated(SessionUpdatedData {
        title: Some(format!("title {i}")),
        ..Default::default()
    }))
    .unwrap()
}

/// `n` single-event appends to one session, then `n` round-robin over 100 sessions: how long each series took.
pub fn appends_one_after_another(store: &keel::store::Store, n: usize) -> (std::time::Duration, std::time::Duration) {
    store.append("one", vec![created("/tmp")]).unwrap();
    let t = std::time::Instant::now();
    for i in 0..n {
        store.append("one", vec![renamed(i)]).unwrap();
    }
    let one = t.elapsed();
    let sessions: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
    for s in &sessions {
        store.append(s, vec![created("/tmp")]).unwrap();
    }
    let t = std::time::Instant::now();
    for i in 0..n {
        store.append(&sessions[i % 100], vec![renamed(i)]).unwrap();
    }
    (one, t.elapsed())
}
