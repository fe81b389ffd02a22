//! `cargo bench --bench agent`: the agent loop's own cost, against an instant mock model on loopback.
//! Prints, asserts nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Answers every request at once with a short streamed Chat Completions answer.
fn instant_mock() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, length) = loop {
                    let n = stream.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = stream.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let mut body = String::new();
                let chunk = |delta: Value, finish: Value| {
                    format!(
                        "data: {}\n\n",
                        json!({ "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
                    )
                };
                body.push_str(&chunk(json!({ "role": "assistant", "content": "" }), Value::Null));
                for word in ["Hello ", "there, ", "this ", "is ", "a ", "short ", "answer."] {
                    body.push_str(&chunk(json!({ "content": word }), Value::Null));
                }
                body.push_str(&chunk(json!({}), json!("stop")));
                // The prompt's size as a model would report it (about 4 bytes a token), so that the engine's own
                // estimate, and compaction, see a history that grows.
                let prompt_tokens = length / 4;
                body.push_str(&format!(
                    "data: {}\n\n",
                    json!({ "choices": [], "usage": { "prompt_tokens": prompt_tokens, "completion_tokens": 7 } })
                ));
                body.push_str("data: [DONE]\n\n");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    port
}

fn write_config(home: &Path, port: u16) {
    write_config_with_window(home, port, 128_000);
}

fn write_config_with_window(home: &Path, port: u16, window: u64) {
    std::fs::create_dir_all(home).unwrap();
    let config = json!({ "model": "mock/m", "providers": { "mock": {
        "wire": "openai-chat", "baseUrl": format!("http://127.0.0.1:{port}/v1"),
        "models": { "m": { "contextWindow": window, "maxOutputTokens": 1000 } } } } });
    std::fs::write(home.join("config.jsonc"), config.to_string()).unwrap();
}

struct Engine {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Engine {
    fn spawn(home: &Path) -> Self {
        let common::Spawned { child, stdin, stdout } = common::spawn_serve(home);
        let mut engine = Self { child, stdin, stdout, next_id: 0 };
        engine.call(
            "initialize",
            json!({ "protocolVersion": 1, "clientInfo": { "name": "bench" }, "capabilities": { "deltas": true } }),
        );
        engine
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn send(&mut self, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        writeln!(self.stdin, "{}", json!({ "jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params }))
            .unwrap();
        self.stdin.flush().unwrap();
        self.next_id
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        common::call(&mut self.stdin, &mut self.stdout, self.next_id, method, params)
    }

    fn peak_rss_mib(&self) -> f64 {
        common::rss_kib(self.child.id(), "VmHWM:") as f64 / 1024.0
    }
}

fn stats(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "median {:.2} ms, p90 {:.2} ms, min {:.2} ms (n={})",
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() * 9 / 10]),
        ms(samples[0]),
        samples.len()
    )
}

fn main() {
    let port = instant_mock();
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().to_str().unwrap().to_owned();
    println!("keel agent-loop benchmark ({} cores)", std::thread::available_parallelism().map_or(1, |n| n.get()));

    // One warm turn at a time: prompt → first delta → activity closed.
    let home = root.path().join("turns");
    write_config(&home, port);
    let mut engine = Engine::spawn(&home);
    let mut turn = Vec::new();
    let mut first_delta = Vec::new();
    for i in 0..201 {
        let session = engine.call("session/create", json!({ "cwd": ws }))["session"]["id"].as_str().unwrap().to_owned();
        engine.call("session/subscribe", json!({ "sessionId": session, "afterSeq": -1 }));
        let t = Instant::now();
        engine.send("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": "hi" }] }));
        let mut delta_at = None;
        loop {
            let m = engine.read();
            if m["method"] == "session/delta" && delta_at.is_none() {
                delta_at = Some(t.elapsed());
            }
            if m["method"] == "session/event" && m["params"]["event"]["type"] == "activity.closed" {
                break;
            }
        }
        if i > 0 {
            turn.push(t.elapsed());
            first_delta.extend(delta_at);
        }
    }
    println!("prompt → activity closed, one turn:       {}", stats(turn));
    println!("prompt → first session/delta:             {}", stats(first_delta));
    println!("engine peak RSS after 200 turns:          {:.1} MiB", engine.peak_rss_mib());
    let _ = engine.child.kill();

    // 100 sessions, each running a turn, all at once.
    let home = root.path().join("parallel");
    write_config(&home, port);
    let mut engine = Engine::spawn(&home);
    let sessions: Vec<String> = (0..100)
        .map(|_| engine.call("session/create", json!({ "cwd": ws }))["session"]["id"].as_str().unwrap().to_owned())
        .collect();
    for s in &sessions {
        engine.call("session/subscribe", json!({ "sessionId": s, "afterSeq": -1 }));
    }
    let t = Instant::now();
    for s in &sessions {
        engine.send("session/prompt", json!({ "sessionId": s, "input": [{ "type": "text", "text": "hi" }] }));
    }
    let mut closed = 0;
    while closed < sessions.len() {
        let m = engine.read();
        if m["method"] == "session/event" && m["params"]["event"]["type"] == "activity.closed" {
            closed += 1;
        }
    }
    println!("100 sessions each running a turn at once: {:.0} ms for all", t.elapsed().as_secs_f64() * 1e3);
    println!("engine peak RSS during that:              {:.1} MiB", engine.peak_rss_mib());
    let _ = engine.child.kill();

    // Per-turn time as the history grows: one session driven to 10, 1,000 and 10,000 transcript parts (a turn adds
    // two: the prompt and the answer), 21 turns measured at each length. With an 8,000-token window the context is
    // compacted along the way, so a turn's cost follows the context, not the log; with a window that never fills
    // (1,000,000 tokens, no compaction) the whole transcript is sent every turn.
    // `KEEL_BENCH_SHORT=1` leaves these long series out (to compare two builds' per-turn overhead quickly).
    let series: &[(&str, u64)] = if std::env::var_os("KEEL_BENCH_SHORT").is_some() {
        &[]
    } else {
        &[("8,000-token window (compacts)", 8_000), ("1,000,000-token window (never compacts)", 1_000_000)]
    };
    for &(label, window) in series {
        let home = root.path().join(format!("history-{window}"));
        write_config_with_window(&home, port, window);
        let mut engine = Engine::spawn(&home);
        let session = engine.call("session/create", json!({ "cwd": ws }))["session"]["id"].as_str().unwrap().to_owned();
        engine.call("session/subscribe", json!({ "sessionId": session, "afterSeq": -1 }));
        let turn = |engine: &mut Engine| {
            let t = Instant::now();
            engine.send("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": "hi" }] }));
            let mut compactions = 0;
            loop {
                let m = engine.read();
                let kind = &m["params"]["event"]["type"];
                if m["method"] == "session/event" && kind == "compaction.completed" {
                    compactions += 1;
                }
                if m["method"] == "session/event" && kind == "activity.closed" {
                    return (t.elapsed(), compactions);
                }
            }
        };
        let mut parts = 0;
        let mut compactions = 0;
        for target in [10, 1_000, 10_000] {
            while parts + 2 * 21 < target {
                compactions += turn(&mut engine).1;
                parts += 2;
            }
            let from = parts;
            let mut samples = Vec::new();
            for _ in 0..21 {
                let (elapsed, compacted) = turn(&mut engine);
                compactions += compacted;
                samples.push(elapsed);
                parts += 2;
            }
            println!("{label}, parts {from}..{parts}: {} ({compactions} compactions so far)", stats(samples));
        }
        let _ = engine.child.kill();
    }

    // `keel run` from spawn to exit.
    let home = root.path().join("run");
    write_config(&home, port);
    let mut runs = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let out = Command::new(common::keel_bin())
            .args(["run", "--cwd", &ws, "hi"])
            .env("KEEL_HOME", &home)
            .env("KEEL_LOG", "error")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        runs.push(t.elapsed());
    }
    println!("keel run, spawn → exit, one turn:         {}", stats(runs));
}
