//! Execution ownership across engine processes on one `KEEL_HOME`, and recovery after a crash or a shutdown: one
//! runner per session (a lease with fencing), work that is safe to continue resumes by itself, and an attempt that
//! may have reached the model waits for `recovery/decide`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::mock::MockModel;
use common::{Client, Home, SocketEngine};
use keel::provider::scripted::{ScriptError, ScriptToolCall, ScriptTurn};
use serde_json::{Value, json};

/// Short leases, so that a takeover after a pause happens within a test.
const FAST_LEASE: &[(&str, &str)] = &[("KEEL_LEASE_MS", "600"), ("KEEL_LEASE_RENEW_MS", "100")];

struct Setup {
    home: Home,
    mock: MockModel,
    ws: String,
}

async fn setup() -> Setup {
    let home = Home::new();
    let config = |url: String| {
        json!({
            "model": "mock/m",
            "providers": { "mock": { "wire": "openai-chat", "baseUrl": url } },
            "permissions": [{ "action": "*", "pattern": "*", "effect": "allow" }],
        })
    };
    let mock = MockModel::start().await;
    std::fs::write(home.path().join("config.jsonc"), config(mock.url()).to_string()).unwrap();
    let ws = home.workspace();
    Setup { home, mock, ws }
}

fn text(text: &str) -> ScriptTurn {
    ScriptTurn { text: Some(text.into()), ..Default::default() }
}

/// An answer that streams for about `chunks` × 50 ms.
fn slow(chunks: usize) -> ScriptTurn {
    ScriptTurn { text: Some("word ".repeat(chunks)), chunk_delay_ms: 50, ..Default::default() }
}

async fn prompt(c: &Client, session: &str, text: &str) {
    c.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": text }] })).await;
}

fn kind(t: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["type"] == t
}

/// Waits (bounded) until the mock has received `n` requests.
async fn requests_reach(mock: &MockModel, n: usize) {
    for _ in 0..1000 {
        if mock.requests().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the mock got {} requests, expected {n}", mock.requests().len());
}

/// Starts an engine, prompts a new session with the slow answer queued first, and SIGKILLs the engine once the
/// model has the request: the session's last attempt has an unknown outcome.
async fn killed_mid_answer(s: &Setup, env: &[(&str, &str)]) -> String {
    let a = SocketEngine::start(s.home.path(), env).await;
    let ca = a.connect().await;
    let session = ca.create_session(&s.ws).await;
    prompt(&ca, &session, "long").await;
    requests_reach(&s.mock, 1).await;
    let mut child = a.child;
    child.kill().await.unwrap();
    session
}

/// The whole log as `(seq, type)`, read through `session/events`.
async fn log(c: &Client, session: &str) -> Vec<(u64, String)> {
    let got = c.ok("session/events", json!({ "sessionId": session, "afterSeq": 0, "limit": 10000 })).await;
    got["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e["type"].as_str().unwrap().into()))
        .collect()
}

fn signal(child: &tokio::process::Child, signal: i32) {
    let pid = child.id().unwrap() as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_woken_for_one_session_make_one_request_per_turn() {
    let s = setup().await;
    s.mock.push(slow(20));
    s.mock.push(text("second"));
    let a = SocketEngine::start_at(s.home.path(), "a.sock", &[]).await;
    let b = SocketEngine::start_at(s.home.path(), "b.sock", &[]).await;
    let (ca, cb) = (a.connect().await, b.connect().await);
    let session = ca.create_session(&s.ws).await;
    let (sa, sb) = (ca.subscribe(&session, 0).await, cb.subscribe(&session, 0).await);
    // Both engines are woken for the session: the same input through both, then a second input through B.
    let same = json!({ "sessionId": session, "inputId": "in-1", "input": [{ "type": "text", "text": "one" }] });
    let (ra, rb) = tokio::join!(ca.ok("session/prompt", same.clone()), cb.ok("session/prompt", same));
    assert_eq!(ra["admittedSeq"], rb["admittedSeq"], "one admission");
    prompt(&cb, &session, "two").await;

    let first = ca.events_until(&sa, kind("activity.closed")).await;
    let second = ca.events_until(&sa, kind("activity.closed")).await;
    assert_eq!(first.last().unwrap()["data"]["reason"], "completed");
    assert_eq!(second.last().unwrap()["data"]["reason"], "completed");
    cb.events_until(&sb, |e| e["seq"] == second.last().unwrap()["seq"]).await;
    let (la, lb) = (log(&ca, &session).await, log(&cb, &session).await);
    assert_eq!(la, lb, "both engines read one log");
    let seqs: Vec<u64> = la.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless, no duplicate");
    let count = |t: &str| la.iter().filter(|(_, k)| k == t).count();
    assert_eq!(count("turn.dispatched"), 2);
    assert_eq!(count("activity.opened"), 2);
    assert_eq!(count("activity.closed"), 2);
    assert_eq!(s.mock.requests().len(), 2, "one model request per turn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_taken_over_and_its_late_writes_are_refused() {
    let s = setup().await;
    s.mock.push(slow(40));
    let a = SocketEngine::start(s.home.path(), FAST_LEASE).await;
    let ca = a.connect().await;
    let session = ca.create_session(&s.ws).await;
    prompt(&ca, &session, "long").await;
    requests_reach(&s.mock, 1).await;
    signal(&a.child, libc::SIGSTOP);

    // B finds the session's lease expired and takes the activity over: its answer was streaming, so it asks.
    let b = SocketEngine::start_at(s.home.path(), "b.sock", FAST_LEASE).await;
    let cb = b.connect().await;
    let sb = cb.subscribe(&session, 0).await;
    let taken = cb.events_until(&sb, kind("recovery.required")).await;
    let takeover = taken.last().unwrap()["seq"].as_u64().unwrap();
    signal(&a.child, libc::SIGCONT);
    // A wakes up mid-stream; its stream ends (about 2 s) and its renewals run: every write it tries is refused.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after: Vec<_> = log(&cb, &session).await.into_iter().filter(|(seq, _)| *seq > takeover).collect();
    assert_eq!(after, [(takeover + 1, "session.status".to_owned())], "nothing from the old owner: {after:?}");
    assert_eq!(cb.ok("session/get", json!({ "sessionId": session })).await["status"], "recovering");
    // A still serves, and the session goes on under whoever runs it next.
    let ca = a.connect().await;
    ca.ok("recovery/decide", json!({ "sessionId": session, "decision": "abandon" })).await;
    let closed = cb.events_until(&sb, kind("activity.closed")).await;
    assert_eq!(closed.last().unwrap()["data"]["error"], "abandoned after the engine stopped");
    assert_eq!(s.mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_never_sent_resumes_by_itself_after_a_crash() {
    let s = setup().await;
    s.mock.push(ScriptTurn {
        error: Some(ScriptError { status: 503, message: "busy".into(), retry_after: None }),
        ..Default::default()
    });
    s.mock.push(text("made it"));
    // The retry waits long enough for the crash to land before it.
    let a = SocketEngine::start(s.home.path(), &[("KEEL_RETRY_BASE_MS", "60000")]).await;
    let ca = a.connect().await;
    let session = ca.create_session(&s.ws).await;
    let sa = ca.subscribe(&session, 0).await;
    prompt(&ca, &session, "go").await;
    ca.events_until(&sa, kind("retry.scheduled")).await;
    let mut child = a.child;
    child.kill().await.unwrap();

    let b = SocketEngine::start(s.home.path(), &[]).await;
    let cb = b.connect().await;
    let sb = cb.subscribe(&session, 0).await;
    let events = cb.events_until(&sb, kind("activity.closed")).await;
    let failed = events.iter().rfind(|e| e["type"] == "turn.failed").unwrap();
    assert_eq!(failed["data"]["error"]["kind"], "not_sent");
    let resumed = events.iter().find(|e| e["type"] == "activity.resumed").unwrap();
    assert_eq!(resumed["data"]["after"], "crash");
    assert!(!events.iter().any(|e| e["type"] == "recovery.required"));
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    assert_eq!(s.mock.requests().len(), 2, "the failed attempt and the resumed one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatched_attempt_waits_for_a_decision_and_retry_sends_it_once() {
    let s = setup().await;
    s.mock.push(slow(40));
    s.mock.push(text("second try"));
    let session = killed_mid_answer(&s, &[]).await;

    let b = SocketEngine::start(s.home.path(), &[]).await;
    let cb = b.connect().await;
    let sb = cb.subscribe(&session, 0).await;
    let required = cb.events_until(&sb, kind("recovery.required")).await.pop().unwrap();
    assert_eq!(required["data"]["reason"], "attempt_dispatched");
    // Waiting is a decided state: nothing runs, also after another restart.
    drop(cb);
    let mut child = b.child;
    child.kill().await.unwrap();
    let c = SocketEngine::start(s.home.path(), &[]).await;
    let cc = c.connect().await;
    let sc = cc.subscribe(&session, required["seq"].as_i64().unwrap() + 1).await;
    assert_eq!(cc.ok("session/get", json!({ "sessionId": session })).await["status"], "recovering");
    assert_eq!(s.mock.requests().len(), 1);
    let wrong = cc.err("recovery/decide", json!({ "sessionId": session, "decision": "maybe" })).await;
    assert_eq!((wrong.code, wrong.data["path"].as_str()), (-32602, Some("decision")));

    cc.ok("recovery/decide", json!({ "sessionId": session, "decision": "retry" })).await;
    let events = cc.events_until(&sc, kind("activity.closed")).await;
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    assert!(events.iter().any(|e| e["type"] == "recovery.resolved" && e["data"]["decision"] == "retry"));
    assert_eq!(s.mock.requests().len(), 2, "sent once more, because a decision said so");
    let idle = cc.err("recovery/decide", json!({ "sessionId": session, "decision": "retry" })).await;
    assert_eq!(idle.code, -32011);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_a_tool_runs_continues_with_the_settled_results() {
    let s = setup().await;
    let sleep = ScriptToolCall { id: Some("c1".into()), name: "bash".into(), input: json!({ "command": "sleep 30" }) };
    s.mock.push(ScriptTurn { tool_calls: vec![sleep], ..Default::default() });
    s.mock.push(text("carried on"));
    let a = SocketEngine::start(s.home.path(), &[]).await;
    let ca = a.connect().await;
    let session = ca.create_session(&s.ws).await;
    let sa = ca.subscribe(&session, 0).await;
    prompt(&ca, &session, "go").await;
    ca.events_until(&sa, kind("tool.started")).await;
    let mut child = a.child;
    child.kill().await.unwrap();

    let b = SocketEngine::start(s.home.path(), &[]).await;
    let cb = b.connect().await;
    let sb = cb.subscribe(&session, 0).await;
    let events = cb.events_until(&sb, kind("activity.closed")).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let from = types.iter().position(|t| *t == "tool.failed").unwrap();
    assert_eq!(
        types[from..from + 4],
        ["tool.failed", "turn.completed", "activity.resumed", "session.status"],
        "the call fails as interrupted, the answered turn completes, the activity goes on"
    );
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    assert_eq!(s.mock.requests().len(), 2);
    let history = s.mock.requests()[1].body["messages"].clone();
    let tool = history.as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap();
    assert!(tool["content"].as_str().unwrap().contains("interrupted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_suspends_and_the_next_start_resumes_without_a_decision() {
    let s = setup().await;
    s.mock.push(slow(200));
    s.mock.push(text("resumed"));
    let mut a = SocketEngine::start(s.home.path(), &[("KEEL_SHUTDOWN_GRACE_MS", "100")]).await;
    let ca = a.connect().await;
    let session = ca.create_session(&s.ws).await;
    let sa = ca.subscribe(&session, 0).await;
    prompt(&ca, &session, "long").await;
    requests_reach(&s.mock, 1).await;
    ca.events_until(&sa, kind("turn.dispatched")).await;
    signal(&a.child, libc::SIGTERM);
    assert_eq!(a.child.wait().await.unwrap().code(), Some(0));

    let b = SocketEngine::start(s.home.path(), &[]).await;
    let cb = b.connect().await;
    let sb = cb.subscribe(&session, 0).await;
    let events = cb.events_until(&sb, kind("activity.closed")).await;
    let cut = events.iter().find(|e| e["type"] == "turn.failed").unwrap();
    assert_eq!(cut["data"]["error"]["kind"], "suspended");
    let suspended = events.iter().position(|e| e["type"] == "activity.suspended").unwrap();
    assert_eq!(events[suspended + 1]["data"]["status"], "suspended");
    let resumed = events.iter().find(|e| e["type"] == "activity.resumed").unwrap();
    assert_eq!(resumed["data"]["after"], "suspension");
    assert!(!events.iter().any(|e| e["type"] == "recovery.required"));
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    assert_eq!(s.mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_while_an_approval_waits_keeps_the_question() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let config = json!({ "model": "mock/m", "providers": { "mock": { "wire": "anthropic", "baseUrl": mock.url() } } });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let write = ScriptToolCall {
        id: Some("w1".into()),
        name: "write".into(),
        input: json!({ "filePath": "kept.txt", "content": "x" }),
    };
    mock.push(ScriptTurn { tool_calls: vec![write], ..Default::default() });
    mock.push(text("written"));
    let mut a = SocketEngine::start(home.path(), &[]).await;
    let ca = a.connect().await;
    let session = ca.create_session(&home.workspace()).await;
    let sa = ca.subscribe(&session, 0).await;
    prompt(&ca, &session, "write").await;
    let asked = ca.events_until(&sa, kind("approval.requested")).await.pop().unwrap();
    signal(&a.child, libc::SIGTERM);
    assert_eq!(a.child.wait().await.unwrap().code(), Some(0));

    let b = SocketEngine::start(home.path(), &[]).await;
    let cb = b.connect().await;
    let sb = cb.subscribe(&session, 0).await;
    cb.events_until(&sb, |e| {
        e["type"] == "session.status"
            && e["data"]["status"] == "waiting_approval"
            && e["seq"].as_u64() > asked["seq"].as_u64()
    })
    .await;
    cb.ok("approval/respond", json!({ "approvalId": asked["data"]["approvalId"], "decision": "once" })).await;
    let events = cb.events_until(&sb, kind("activity.closed")).await;
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    assert!(std::path::Path::new(&home.workspace()).join("kept.txt").exists());
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_taken_while_an_activity_waits_copies_no_running_work() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let config =
        json!({ "model": "mock/m", "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url() } } });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let write = ScriptToolCall {
        id: Some("w1".into()),
        name: "write".into(),
        input: json!({ "filePath": "f.txt", "content": "x" }),
    };
    mock.push(ScriptTurn { tool_calls: vec![write], ..Default::default() });
    let a = SocketEngine::start(home.path(), &[]).await;
    let c = a.connect().await;
    let session = c.create_session(&home.workspace()).await;
    let sub = c.subscribe(&session, 0).await;
    prompt(&c, &session, "write").await;
    c.events_until(&sub, kind("approval.requested")).await;
    let fork =
        c.ok("session/fork", json!({ "sessionId": session })).await["session"]["id"].as_str().unwrap().to_owned();
    let got = c.ok("session/get", json!({ "sessionId": fork })).await;
    assert_eq!(got["status"], "idle");
    assert!(got["pendingApprovals"].as_array().unwrap().is_empty());
    let tail: Vec<String> = log(&c, &fork).await.into_iter().rev().take(4).map(|(_, k)| k).collect();
    assert_eq!(tail, ["session.status", "activity.closed", "approval.resolved", "tool.failed"]);
    // The source still waits for its answer; nothing ran for the fork.
    assert_eq!(c.ok("session/get", json!({ "sessionId": session })).await["status"], "waiting_approval");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_run_on_a_session_waiting_for_a_decision_abandons_the_cut_activity() {
    let s = setup().await;
    s.mock.push(slow(40));
    s.mock.push(text("next answer"));
    let session = killed_mid_answer(&s, &[]).await;
    let b = SocketEngine::start(s.home.path(), &[]).await;
    let cb = b.connect().await;
    let sb = cb.subscribe(&session, 0).await;
    cb.events_until(&sb, kind("recovery.required")).await;
    let mut child = b.child;
    child.kill().await.unwrap();

    let out = common::keel_command(s.home.path())
        .args(["run", "--session", &session, "-q", "move on"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "next answer");
    let c = SocketEngine::start(s.home.path(), &[]).await;
    let log = log(&c.connect().await, &session).await;
    let resolved = log.iter().position(|(_, k)| k == "recovery.resolved").unwrap();
    assert!(log[resolved..].iter().any(|(_, k)| k == "activity.closed"));
    assert_eq!(s.mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_may_retry_an_unknown_outcome_by_itself_within_a_budget() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let config = json!({
        "model": "mock/m",
        "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url(), "retryUnknownOutcome": true } },
        "recovery": { "retryBudget": 1 },
    });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    mock.push(slow(40));
    mock.push(slow(40));
    let env = [("KEEL_RETRY_BASE_MS", "10")];
    let a = SocketEngine::start(home.path(), &env).await;
    let ca = a.connect().await;
    let session = ca.create_session(&home.workspace()).await;
    prompt(&ca, &session, "long").await;
    requests_reach(&mock, 1).await;
    let mut child = a.child;
    child.kill().await.unwrap();

    // The first crash is retried by policy, with its backoff on record.
    let b = SocketEngine::start(home.path(), &env).await;
    let cb = b.connect().await;
    let sb = cb.subscribe(&session, 0).await;
    let events = cb.events_until(&sb, kind("recovery.resolved")).await;
    let scheduled = events.iter().find(|e| e["type"] == "retry.scheduled").unwrap();
    assert_eq!(scheduled["data"]["error"]["kind"], "unknown_outcome");
    let resolved = events.last().unwrap();
    assert_eq!(
        (resolved["data"]["decision"].as_str(), resolved["data"]["by"].as_str()),
        (Some("retry"), Some("policy"))
    );
    requests_reach(&mock, 2).await;
    let mut child = b.child;
    child.kill().await.unwrap();

    // The budget is spent: the second crash waits for a person.
    let c = SocketEngine::start(home.path(), &env).await;
    let cc = c.connect().await;
    let sc = cc.subscribe(&session, 0).await;
    cc.events_until(&sc, kind("recovery.required")).await;
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_request_on_stdio_suspends_before_it_is_answered() {
    let s = setup().await;
    s.mock.push(slow(200));
    s.mock.push(text("resumed"));
    let engine =
        common::Engine::start_with(s.home.path(), common::Framing::Ndjson, &[("KEEL_SHUTDOWN_GRACE_MS", "100")]).await;
    let c = &engine.client;
    c.initialize().await;
    let session = c.create_session(&s.ws).await;
    prompt(c, &session, "long").await;
    requests_reach(&s.mock, 1).await;
    c.ok("shutdown", json!(null)).await;
    // Answered after the suspension: the log already ends with it, before `exit`.
    let events = common::open_store(s.home.path()).events_after(&session, 0, usize::MAX).unwrap();
    let last: Vec<&str> = events.iter().rev().take(2).map(|e| e.kind.as_str()).collect();
    assert_eq!(last, ["session.status", "activity.suspended"]);
    c.notify("exit", json!(null));
    assert_eq!(engine.wait_exit().await, 0);
}
