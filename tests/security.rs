//! Hostile and unlucky input at the process boundary: writes that shell redirections hide from approval, commands
//! confined by the kernel, keys that must never leave, memory that strangers must not hold, readers that are slow
//! but alive, and providers that go silent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mock::{MockModel, Wire};
use common::{Client, Home, SocketEngine};
use keel::provider::scripted::{ScriptToolCall, ScriptTurn};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "sk-test-STREAMSECRET-0123456789";

fn bash(id: &str, command: &str) -> ScriptToolCall {
    ScriptToolCall { id: Some(id.into()), name: "bash".into(), input: json!({ "command": command }) }
}

fn text(t: &str) -> ScriptTurn {
    ScriptTurn { text: Some(t.into()), ..Default::default() }
}

struct Setup {
    home: Home,
    ws: PathBuf,
    mock: MockModel,
    engine: SocketEngine,
}

async fn setup(wire: Wire, extra: Value, env: &[(&str, &str)]) -> Setup {
    let home = Home::new();
    let mock = MockModel::start().await;
    let mut config = json!({ "model": "mock/m",
        "providers": { "mock": { "wire": wire.config_name(), "baseUrl": mock.url(), "apiKey": KEY } } });
    for (k, v) in extra.as_object().unwrap() {
        if k == "providers" {
            for (kk, vv) in v["mock"].as_object().unwrap() {
                config["providers"]["mock"][kk] = vv.clone();
            }
        } else {
            config[k] = v.clone();
        }
    }
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let mut env = env.to_vec();
    env.push(("KEEL_RETRY_BASE_MS", "20"));
    let engine = SocketEngine::start(home.path(), &env).await;
    let ws = PathBuf::from(home.workspace());
    Setup { home, ws, mock, engine }
}

async fn prompt(c: &Client, session: &str) {
    c.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": "go" }] })).await;
}

/// Events until `stop`, answering every approval request with `decision` on the way; the frames seen as text.
async fn run_until(c: &Client, decision: &str, stop: impl Fn(&Value) -> bool) -> (Vec<Value>, Vec<Value>, String) {
    let (mut events, mut asked, mut frames) = (Vec::new(), Vec::new(), String::new());
    loop {
        let m = c.next_message().await;
        frames.push_str(&m.to_string());
        if m["method"] == "approval/request" {
            asked.push(m["params"].clone());
            c.respond(&m["id"], json!({ "decision": decision }));
        }
        if m["method"] == "session/event" {
            let e = m["params"]["event"].clone();
            let done = stop(&e);
            events.push(e);
            if done {
                return (events, asked, frames);
            }
        }
    }
}

fn closed(e: &Value) -> bool {
    e["type"] == "activity.closed"
}

/// Runs one `bash` call (then a closing answer) in a new session; the activity's events.
async fn run_bash(s: &Setup, c: &Client, command: &str) -> Vec<Value> {
    s.mock.push(ScriptTurn { tool_calls: vec![bash("c1", command)], ..Default::default() });
    s.mock.push(text("done"));
    let session = c.create_session(s.ws.to_str().unwrap()).await;
    c.subscribe(&session, 0).await;
    prompt(c, &session).await;
    run_until(c, "reject", closed).await.0
}

fn tool_result(events: &[Value]) -> String {
    events.iter().find(|e| e["type"] == "tool.completed").expect("the command ran")["data"].to_string()
}

/// A directory outside both the workspace and the temporary directories that sandboxed commands may write to:
/// the build's own temp dir unless the checkout itself lies in /tmp (a fresh clone there), else one in $HOME.
fn outside_dir(name: &str) -> PathBuf {
    let temp = [std::env::temp_dir(), PathBuf::from("/tmp"), PathBuf::from("/var/tmp"), PathBuf::from("/dev/shm")];
    let home = PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache");
    let base = [PathBuf::from(env!("CARGO_TARGET_TMPDIR")), home]
        .into_iter()
        .find(|dir| !temp.iter().any(|t| dir.starts_with(t)))
        .expect("a directory outside the temporary ones");
    let dir = base.join(format!("keel-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_rejected_approval_leaves_no_file_written_by_any_redirection_form() {
    let s = setup(Wire::Chat, json!({}), &[]).await;
    let outside = outside_dir("redirect");
    let out = outside.display();
    let lines = [
        "echo hi > f1.txt".to_owned(),
        "echo hi >> f2.txt".into(),
        "echo hi &> f3.txt".into(),
        "echo hi 2> f4.txt".into(),
        "echo hi >| f5.txt".into(),
        "ls 1>f6.txt".into(),
        "echo hi &>> f7.txt".into(),
        "echo hi 3<> f8.txt".into(),
        "echo x > \"f9.txt\"; echo y".into(),
        format!("echo hi > {out}/f10.txt"),
        format!("echo hi >> {out}/.bashrc"),
        "git status > f12.txt".into(),
    ];
    let calls = lines.iter().enumerate().map(|(i, l)| bash(&format!("c{i}"), l)).collect();
    s.mock.push(ScriptTurn { tool_calls: calls, ..Default::default() });
    s.mock.push(text("done"));
    let c = s.engine.connect_with(json!({ "approvals": true })).await;
    let session = c.create_session(s.ws.to_str().unwrap()).await;
    c.subscribe(&session, 0).await;
    prompt(&c, &session).await;
    let (events, asked, _) = run_until(&c, "reject", closed).await;
    assert_eq!(asked.len(), lines.len(), "every line asks: {asked:#?}");
    for approval in &asked {
        assert_ne!(approval["action"], "bash", "the command itself is allowed; its write asks: {approval}");
    }
    let failed = events.iter().filter(|e| e["type"] == "tool.failed" || e["type"] == "tool.completed").count();
    assert_eq!(failed, lines.len());
    for i in 1..=12 {
        assert!(!s.ws.join(format!("f{i}.txt")).exists(), "f{i}.txt was written");
    }
    let appeared = std::fs::read_dir(&outside).unwrap().next().is_some();
    let _ = std::fs::remove_dir_all(&outside);
    assert!(!appeared, "a file appeared outside the workspace");
}

#[tokio::test]
async fn sandboxed_bash_cannot_write_outside_or_read_keel_state_even_when_the_rules_allow_it() {
    if !keel::sandbox::landlock_available() {
        assert!(std::env::var_os("KEEL_REQUIRE_LANDLOCK").is_none(), "this kernel has no Landlock");
        eprintln!("skipped: this kernel has no Landlock");
        return;
    }
    let allow_all = json!({ "permissions": [{ "action": "*", "pattern": "*", "effect": "allow" }] });
    let env_key = "sk-env-ENVSECRET-abcdef0123";
    let s = setup(Wire::Chat, allow_all, &[("OPENAI_API_KEY", env_key)]).await;
    let outside = outside_dir("sandbox");
    let home = s.home.path().display().to_string();
    let command = format!(
        "echo pwned > {}/escape.txt; echo pwned > {home}/planted; cat {home}/auth.json; cat {home}/keel.db | head -c 100; \
         cat /proc/$PPID/environ; env; echo inside > ok.txt",
        outside.display()
    );
    s.mock.push(ScriptTurn { tool_calls: vec![bash("c1", &command)], ..Default::default() });
    s.mock.push(text("done"));
    let c = s.engine.connect().await;
    c.ok("auth/set", json!({ "provider": "anthropic", "apiKey": "sk-ant-AUTHSECRET-0123456789" })).await;
    let session = c.create_session(s.ws.to_str().unwrap()).await;
    c.subscribe(&session, 0).await;
    prompt(&c, &session).await;
    let (events, asked, _) = run_until(&c, "reject", closed).await;
    assert!(asked.is_empty());
    let result = events.iter().find(|e| e["type"] == "tool.completed").expect("the command ran").to_string();
    for leaked in ["AUTHSECRET", "ENVSECRET", "STREAMSECRET", "[redacted]"] {
        assert!(!result.contains(leaked), "{leaked} in {result}");
    }
    assert!(result.contains("Permission denied"), "{result}");
    let escaped = outside.join("escape.txt").exists();
    let _ = std::fs::remove_dir_all(&outside);
    assert!(!escaped, "wrote outside the workspace");
    assert!(!s.home.path().join("planted").exists(), "wrote into keel's home");
    assert!(s.ws.join("ok.txt").exists(), "the workspace stays writable");
}

#[tokio::test]
async fn env_in_bash_shows_no_key_even_unsandboxed() {
    let config = json!({ "sandbox": { "mode": "off" },
        "permissions": [{ "action": "bash", "pattern": "*", "effect": "allow" }] });
    let s =
        setup(Wire::Chat, config, &[("OPENAI_API_KEY", "sk-env-ENVSECRET-abcdef0123"), ("GH_TOKEN", "ghp_x")]).await;
    let c = s.engine.connect().await;
    let result = tool_result(&run_bash(&s, &c, "env").await);
    assert!(result.contains("PATH="), "{result}");
    for name in ["OPENAI_API_KEY", "GH_TOKEN", "ENVSECRET"] {
        assert!(!result.contains(name), "{name} in {result}");
    }
}

#[tokio::test]
async fn each_wires_in_stream_error_carrying_the_key_reaches_neither_the_database_nor_a_frame() {
    for wire in Wire::ALL {
        let s = setup(wire, json!({}), &[]).await;
        for _ in 0..6 {
            s.mock.push(ScriptTurn {
                stream_error: Some(format!("invalid request: Authorization: Bearer {KEY}")),
                ..Default::default()
            });
        }
        let c = s.engine.connect().await;
        let session = c.create_session(s.ws.to_str().unwrap()).await;
        c.subscribe(&session, 0).await;
        prompt(&c, &session).await;
        let (events, _, frames) = run_until(&c, "reject", closed).await;
        assert!(events.iter().any(|e| e["type"] == "turn.failed"), "{wire:?}");
        assert!(frames.contains("[redacted]"), "{wire:?}: the error is reported, scrubbed: {frames}");
        assert!(!frames.contains(KEY), "{wire:?}: the key reached a frame");
        let stored = common::stored_bytes(s.home.path());
        assert!(!contains(&stored, KEY), "{wire:?}: the key reached the database");
    }
}

#[tokio::test]
async fn a_provider_that_goes_silent_is_retried_after_its_timeout() {
    let timeouts = json!({ "providers": { "mock": { "firstByteTimeoutMs": 300, "idleTimeoutMs": 300 } } });
    let s = setup(Wire::Responses, timeouts, &[]).await;
    // Accepts the request and sends nothing; then one that starts its stream and goes quiet.
    s.mock.push(ScriptTurn { delay_ms: 60_000, ..text("never") });
    s.mock.push(text("recovered"));
    s.mock.push(ScriptTurn { chunk_delay_ms: 60_000, ..text("one two three") });
    s.mock.push(text("recovered again"));
    let c = s.engine.connect().await;
    let session = c.create_session(s.ws.to_str().unwrap()).await;
    c.subscribe(&session, 0).await;
    for expected in ["recovered", "recovered again"] {
        prompt(&c, &session).await;
        let (events, _, _) = run_until(&c, "reject", closed).await;
        let retry = events.iter().find(|e| e["type"] == "retry.scheduled").expect("the silent attempt is retried");
        assert_eq!(retry["data"]["error"]["kind"], "timeout", "{retry}");
        assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
        assert!(events.iter().any(|e| e["type"] == "text.completed" && e["data"]["text"] == expected));
    }
    assert_eq!(s.mock.requests().len(), 4);
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn strangers_cannot_hold_memory_and_large_frames_give_it_back() {
    let s = setup(Wire::Chat, json!({}), &[]).await;
    let pid = s.engine.child.id().unwrap();
    let c = s.engine.connect().await;
    c.create_session(s.ws.to_str().unwrap()).await;
    let idle = resident_kib(pid);

    // Twelve strangers hold partial frames just under the pre-initialize limit; twelve more try to go past it.
    let mut held = Vec::new();
    for _ in 0..12 {
        let mut stream = tokio::net::UnixStream::connect(&s.engine.socket).await.unwrap();
        stream.write_all(&vec![b' '; 60 * 1024]).await.unwrap();
        stream
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"x\":\"")
            .await
            .unwrap();
        held.push(stream);
    }
    for _ in 0..12 {
        let mut stream = tokio::net::UnixStream::connect(&s.engine.socket).await.unwrap();
        let _ = stream.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"x\":\"").await;
        let _ = stream.write_all(&vec![b'a'; 1024 * 1024]).await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the connection is closed");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.contains("-32600") && answer.contains("before `initialize`"), "{answer}");
    }
    let with_strangers = resident_kib(pid);
    assert!(with_strangers < idle + 16 * 1024, "strangers took {} KiB", with_strangers - idle);

    // A valid 15 MiB frame after initialize is answered, and its memory goes back.
    let big = "x".repeat(15 * 1024 * 1024);
    let answer = c.call("session/list", json!({ "padding": big })).await;
    assert!(answer.is_ok() || answer.is_err());
    drop(held);
    // The memory goes back once the answer is out and the request's task has ended, which the client cannot see.
    let mut after = resident_kib(pid);
    for _ in 0..50 {
        if after < idle + 24 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = resident_kib(pid);
    }
    eprintln!("resident KiB: idle {idle}, with 24 strangers {with_strangers}, after a 15 MiB frame {after}");
    assert!(after < idle + 24 * 1024, "{} KiB stayed after a 15 MiB frame (idle {idle} KiB)", after - idle);
    assert!(c.call("session/list", json!({})).await.is_ok(), "the engine keeps serving");
}

#[tokio::test]
async fn slow_but_steady_readers_are_never_cut_while_a_non_reader_is() {
    const SUBSCRIPTIONS: usize = 50;
    const RENAMES: usize = 40;
    let s = setup(Wire::Chat, json!({}), &[("KEEL_SUBSCRIBER_STALL_MS", "4000")]).await;
    let writer = s.engine.connect().await;
    let session = writer.create_session(s.ws.to_str().unwrap()).await;
    let subscribe_all = |session: String| {
        (0..SUBSCRIPTIONS)
            .map(|i| {
                json!({ "jsonrpc": "2.0", "id": 100 + i, "method": "session/subscribe",
                        "params": { "sessionId": session, "afterSeq": -1 } })
                .to_string()
                    + "\n"
            })
            .collect::<String>()
    };
    let init = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":1,\"clientInfo\":{\"name\":\"t\"}}}\n";
    let mut slow = tokio::net::UnixStream::connect(&s.engine.socket).await.unwrap();
    let mut stopped = tokio::net::UnixStream::connect(&s.engine.socket).await.unwrap();
    for stream in [&mut slow, &mut stopped] {
        stream.write_all(init.as_bytes()).await.unwrap();
        stream.write_all(subscribe_all(session.clone()).as_bytes()).await.unwrap();
    }
    // The slow reader takes a bite, then pauses for half the stall time, again and again.
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let need = SUBSCRIPTIONS * RENAMES;
        let mut lines = 0;
        loop {
            if lines > need + 2 * SUBSCRIPTIONS {
                return String::from_utf8_lossy(&seen).into_owned();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            match tokio::time::timeout(Duration::from_secs(30), slow.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    lines += buf[..n].iter().filter(|b| **b == b'\n').count();
                    seen.extend_from_slice(&buf[..n]);
                }
                _ => return String::from_utf8_lossy(&seen).into_owned(),
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..RENAMES {
        writer.ok("session/update", json!({ "sessionId": session, "title": format!("t{i}") })).await;
    }
    let seen = reader.await.unwrap();
    let ended = seen.find("subscriptionEnded").map(|i| &seen[i.saturating_sub(100)..(i + 300).min(seen.len())]);
    assert!(ended.is_none(), "a slow reader was cut: {ended:?}");
    assert_eq!(seen.matches("\"session/event\"").count(), SUBSCRIPTIONS * RENAMES);

    // The connection that never read is cut: once it reads, it finds its subscriptions ended as lagged.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let mut all = Vec::new();
    let mut buf = vec![0u8; 1024 * 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), stopped.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("subscriptionEnded") && text.contains("lagged"), "the non-reader was never cut");
}

#[tokio::test]
async fn cursors_beyond_range_and_too_many_subscriptions_are_clear_errors() {
    let s = setup(Wire::Chat, json!({}), &[("KEEL_MAX_SUBSCRIPTIONS", "2")]).await;
    let c = s.engine.connect().await;
    let session = c.create_session(s.ws.to_str().unwrap()).await;
    let e = c.err("session/events", json!({ "sessionId": session, "afterSeq": 1u64 << 63 })).await;
    assert_eq!(e.code, -32602);
    c.subscribe(&session, 0).await;
    c.subscribe(&session, 0).await;
    let e = c.err("session/subscribe", json!({ "sessionId": session })).await;
    assert_eq!(e.code, -32001, "{}", e.message);
    assert!(c.call("session/list", json!({})).await.is_ok());
}

#[tokio::test]
async fn the_sandbox_can_deny_the_network() {
    if !keel::sandbox::landlock_available() {
        eprintln!("skipped: this kernel has no Landlock");
        return;
    }
    for (network, expected) in [(true, "connected"), (false, "Permission denied")] {
        let config = json!({ "sandbox": { "network": network },
            "permissions": [{ "action": "*", "pattern": "*", "effect": "allow" }] });
        let s = setup(Wire::Chat, config, &[]).await;
        let port = s.mock.url().rsplit(':').next().unwrap().split('/').next().unwrap().to_owned();
        let command = format!("(exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected) 2>&1");
        let c = s.engine.connect().await;
        let result = tool_result(&run_bash(&s, &c, &command).await);
        assert!(result.contains(expected), "network {network}: {result}");
    }
}

#[tokio::test]
async fn keels_home_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup(Wire::Chat, json!({}), &[]).await;
    let c = s.engine.connect().await;
    c.create_session(s.ws.to_str().unwrap()).await;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(s.home.path()), 0o700);
    if common::store_for(s.home.path()).is_some() {
        return;
    }
    for file in ["keel.db", "keel.db-wal", "keel.db-shm"] {
        let path = s.home.path().join(file);
        assert!(path.exists(), "{file}");
        assert_eq!(mode(&path), 0o600, "{file}");
    }
}
