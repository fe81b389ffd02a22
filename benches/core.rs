//! `cargo bench --bench core`: the durable core's figures. Prints, asserts nothing.
//!
//! Store figures are measured in-process; protocol figures spawn the release `keel` binary and talk to it over
//! stdio or a Unix socket, as a frontend would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{call, created, line, renamed, rss_kib, spawn_serve};
use keel::store::Store;
use serde_json::json;

fn main() {
    let home = tempfile::tempdir().unwrap();
    let ws = home.path().to_str().unwrap().to_owned();
    println!("keel core benchmark ({} cores)", std::thread::available_parallelism().map_or(1, |n| n.get()));

    append_benchmarks(&home.path().join("append"));
    start_benchmark(&home.path().join("start"));
    replay_benchmark(&home.path().join("replay"), &ws);
    fanout_benchmark(&home.path().join("fanout"), &ws);
}

fn rate(n: usize, took: Duration) -> String {
    format!("{:>9.0} events/s", n as f64 / took.as_secs_f64())
}

fn append_benchmarks(home: &Path) {
    let store = Store::open(&home.join("keel.db")).unwrap();
    let n = 30_000;
    let (one, hundred) = common::appends_one_after_another(&store, n);
    println!("append, 1 session, 1 event per transaction:     {}", rate(n, one));
    println!("append, 100 sessions, 1 event per transaction:  {}", rate(n, hundred));

    let batches = 1_000;
    let t = Instant::now();
    for b in 0..batches {
        store.append("one", (0..256).map(|i| renamed(b * 256 + i)).collect()).unwrap();
    }
    println!("append, 1 session, 256 events per transaction:  {}", rate(batches * 256, t.elapsed()));
}

const INIT: &str =
    r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":1,"clientInfo":{"name":"bench"}}}"#;

fn start_benchmark(home: &Path) {
    // The first start creates the database; the figure is for a warm home, as a frontend sees it.
    let mut times = Vec::new();
    let mut idle_rss = 0;
    for _ in 0..21 {
        let t = Instant::now();
        let mut e = spawn_serve(home);
        writeln!(e.stdin, "{INIT}").unwrap();
        e.stdin.flush().unwrap();
        line(&mut e.stdout);
        times.push(t.elapsed());
        idle_rss = rss_kib(e.child.id(), "VmRSS:");
        e.child.kill().unwrap();
        e.child.wait().unwrap();
    }
    times.sort();
    println!(
        "spawn → initialize answered:                    median {:.2} ms, min {:.2} ms",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
    println!("idle RSS after initialize:                      {:.1} MiB", idle_rss as f64 / 1024.0);
}

fn replay_benchmark(home: &Path, ws: &str) {
    let n = 100_000;
    {
        let store = Store::open(&home.join("keel.db")).unwrap();
        store.append("big", vec![created(ws)]).unwrap();
        for b in 0..n / 1000 {
            store.append("big", (0..1000).map(|i| renamed(b * 1000 + i)).collect()).unwrap();
        }
    }
    let mut e = spawn_serve(home);
    writeln!(e.stdin, "{INIT}").unwrap();
    line(&mut e.stdout);
    let t = Instant::now();
    call(&mut e.stdin, &mut e.stdout, 1, "session/subscribe", json!({ "sessionId": "big", "afterSeq": 0 }));
    let mut events = 0;
    loop {
        let l = line(&mut e.stdout);
        if l.contains("\"session/synced\"") {
            break;
        }
        events += 1;
    }
    let took = t.elapsed();
    assert_eq!(events, n + 1);
    println!(
        "replay of a {n}-event session to a client:   {:.0} ms ({})",
        took.as_secs_f64() * 1e3,
        rate(events, took).trim()
    );
    println!(
        "engine peak RSS after the replay:               {:.1} MiB",
        rss_kib(e.child.id(), "VmHWM:") as f64 / 1024.0
    );
    e.child.kill().unwrap();
    e.child.wait().unwrap();
}

fn fanout_benchmark(home: &Path, ws: &str) {
    std::fs::create_dir_all(home).unwrap();
    let socket = home.join("keel.sock");
    let mut child = Command::new(common::keel_bin())
        .args(["serve", "--listen", &format!("unix:{}", socket.display())])
        .env("KEEL_HOME", home)
        .env("KEEL_LOG", "error")
        .spawn()
        .unwrap();
    while UnixStream::connect(&socket).is_err() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let connect = || {
        let s = UnixStream::connect(&socket).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        writeln!(w, "{INIT}").unwrap();
        line(&mut r);
        (w, r)
    };
    let (mut w, mut r) = connect();
    let session =
        call(&mut w, &mut r, 1, "session/create", json!({ "cwd": ws }))["session"]["id"].as_str().unwrap().to_owned();
    let subscribers = 100;
    let events = 1_000;
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let (mut sw, mut sr) = connect();
        call(&mut sw, &mut sr, 1, "session/subscribe", json!({ "sessionId": session, "afterSeq": -1 }));
        line(&mut sr); // synced
        readers.push(std::thread::spawn(move || {
            let _keep = sw;
            for _ in 0..events {
                line(&mut sr);
            }
            Instant::now()
        }));
    }
    let t = Instant::now();
    for i in 0..events {
        call(
            &mut w,
            &mut r,
            10 + i as u64,
            "session/update",
            json!({ "sessionId": session, "title": format!("t{i}") }),
        );
    }
    let writes_done = t.elapsed();
    let last = readers.into_iter().map(|h| h.join().unwrap()).max().unwrap();
    let took = last - t;
    println!(
        "fan-out, {events} events to {subscribers} subscribers:     {:.0} ms for all ({} delivered; writer alone {:.0} ms)",
        took.as_secs_f64() * 1e3,
        rate(events * subscribers, took).trim(),
        writes_done.as_secs_f64() * 1e3
    );
    println!(
        "engine peak RSS with 100 subscribers:           {:.1} MiB",
        rss_kib(child.id(), "VmHWM:") as f64 / 1024.0
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
