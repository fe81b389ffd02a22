//! Compaction against the mock model: a context overflow answered by one compaction and a retry of the same step,
//! per wire format; a second overflow failing clearly; the automatic trigger before a turn on a small declared
//! window; what the request after a compaction holds; `session/compact` in order with queued prompts; a SIGKILL in
//! the middle of a compaction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::mock::{Dialect, MockModel, Wire};
use common::{Client, Engine, Framing, Home, SocketEngine};
use keel::provider::scripted::{ScriptError, ScriptTurn, ScriptUsage};
use serde_json::{Value, json};

const SUMMARY: &str = "## Goal\nship the parser\n## Next step\nrun the tests";

fn answer(text: &str, input_tokens: u64) -> ScriptTurn {
    ScriptTurn {
        text: Some(text.into()),
        usage: Some(ScriptUsage { input: input_tokens, output: 10, ..Default::default() }),
        ..Default::default()
    }
}

fn failing(status: u16, message: &str) -> ScriptTurn {
    ScriptTurn { error: Some(ScriptError { status, message: message.into(), retry_after: None }), ..Default::default() }
}

/// Each wire's own way of saying the prompt is too long.
fn overflow(wire: Wire, dialect: Dialect) -> ScriptTurn {
    match (wire, dialect) {
        (Wire::Anthropic, _) => failing(400, "prompt is too long: 210000 tokens > 200000 maximum"),
        (Wire::Chat, Dialect::LlamaCpp) => {
            failing(400, "the request exceeds the available context size, try increasing it")
        }
        _ => failing(
            400,
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
        ),
    }
}

fn config(wire: Wire, mock: &MockModel, window: u64, extra: Value) -> Value {
    let mut config = json!({
        "model": "mock/test-model",
        "providers": { "mock": {
            "wire": wire.config_name(), "baseUrl": mock.url(), "apiKey": "sk-test",
            "models": { "test-model": { "contextWindow": window, "maxOutputTokens": 200 } } } }
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    config
}

struct Setup {
    _home: Home,
    mock: MockModel,
    engine: Engine,
    session: String,
    sub: String,
}

async fn setup(wire: Wire, window: u64, turns: Vec<ScriptTurn>, extra: Value) -> Setup {
    let home = Home::new();
    let mock = MockModel::start().await;
    for turn in turns {
        mock.push(turn);
    }
    std::fs::write(home.path().join("config.jsonc"), config(wire, &mock, window, extra).to_string()).unwrap();
    let engine = Engine::start_with(home.path(), Framing::Ndjson, &[("KEEL_RETRY_BASE_MS", "20")]).await;
    engine.client.initialize().await;
    let session = engine.client.create_session(&home.workspace()).await;
    let sub = engine.client.subscribe(&session, 0).await;
    Setup { _home: home, mock, engine, session, sub }
}

async fn prompt(c: &Client, session: &str, text: &str) -> Value {
    c.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": text }] })).await
}

/// One prompt answered, then a `session/compact`: the compaction activity's events, which must complete.
async fn compact_after_one_prompt(s: &Setup) -> Vec<Value> {
    let c = &s.engine.client;
    prompt(c, &s.session, "the first question").await;
    c.events_until(&s.sub, closed).await;
    c.ok("session/compact", json!({ "sessionId": s.session })).await;
    let events = c.events_until(&s.sub, closed).await;
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed", "{:?}", types(&events));
    events
}

fn closed(e: &Value) -> bool {
    e["type"] == "activity.closed"
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// Where `kind` first appears.
fn position(events: &[Value], kind: &str) -> usize {
    events.iter().position(|e| e["type"] == kind).unwrap_or_else(|| panic!("no {kind} in {:?}", types(events)))
}

#[tokio::test]
async fn an_overflow_is_compacted_once_and_the_same_step_runs_again_on_every_wire() {
    let cases = [
        (Wire::Chat, Dialect::OpenAi),
        (Wire::Chat, Dialect::LlamaCpp),
        (Wire::Responses, Dialect::OpenAi),
        (Wire::Anthropic, Dialect::OpenAi),
    ];
    for (wire, dialect) in cases {
        let turns = vec![
            answer("the old answer", 100),
            overflow(wire, dialect),
            answer(SUMMARY, 50),
            answer("the new answer", 80),
        ];
        let s = setup(wire, 100_000, turns, json!({})).await;
        s.mock.dialect(dialect);
        let c = &s.engine.client;
        prompt(c, &s.session, "the first question").await;
        c.events_until(&s.sub, closed).await;
        prompt(c, &s.session, "the second question").await;
        let events = c.events_until(&s.sub, closed).await;

        let case = format!("{wire:?} {dialect:?}");
        let failed = of_type(&events, "turn.failed");
        assert_eq!(failed.len(), 1, "{case}: {:?}", types(&events));
        assert_eq!(failed[0]["data"]["error"]["kind"], "context_overflow", "{case}");
        assert_eq!(failed[0]["data"]["retryable"], true, "{case}");
        let started = of_type(&events, "compaction.started");
        assert_eq!(started.len(), 1, "{case}");
        assert_eq!(started[0]["data"]["reason"], "overflow");
        let completed = of_type(&events, "compaction.completed")[0]["data"].clone();
        assert_eq!(completed["summary"], SUMMARY, "{case}");
        assert!(completed["checkpointSeq"].as_u64().unwrap() > 0, "{case}");
        assert!(position(&events, "compaction.completed") < position(&events, "turn.completed"));
        assert_eq!(events.last().unwrap()["data"]["reason"], "completed", "{case}");
        // One step: two turns started (the overflow and its retry), one summary request between them.
        assert_eq!(of_type(&events, "turn.started").len(), 2, "{case}");

        let requests = s.mock.requests();
        assert_eq!(requests.len(), 4, "{case}");
        let summary_request = requests[2].body.to_string();
        assert!(summary_request.contains("the first question"), "{case}: {summary_request}");
        assert!(!summary_request.contains("\"tools\":[{"), "{case}: the summariser gets no tools");
        let retry = requests[3].body.to_string();
        assert!(retry.contains("ship the parser"), "{case}: the retry holds the summary: {retry}");
        assert!(retry.contains("the second question"), "{case}: and the recent tail");
        assert!(!retry.contains("the first question"), "{case}: and none of the summarised prefix: {retry}");
    }
}

#[tokio::test]
async fn a_second_overflow_fails_the_activity_with_a_clear_error() {
    for wire in Wire::ALL {
        let turns = vec![
            answer("the old answer", 100),
            overflow(wire, Dialect::OpenAi),
            answer(SUMMARY, 50),
            overflow(wire, Dialect::OpenAi),
        ];
        let s = setup(wire, 100_000, turns, json!({})).await;
        let c = &s.engine.client;
        prompt(c, &s.session, "the first question").await;
        c.events_until(&s.sub, closed).await;
        prompt(c, &s.session, "the second question").await;
        let events = c.events_until(&s.sub, closed).await;
        let close = &events.last().unwrap()["data"];
        assert_eq!(close["reason"], "failed", "{wire:?}");
        let error = close["error"].as_str().unwrap();
        assert!(error.contains("too long for the model's context window"), "{wire:?}: {error}");
        assert!(error.contains("after compacting"), "{wire:?}: {error}");
        assert_eq!(of_type(&events, "compaction.started").len(), 1, "{wire:?}: compacted once, not in a loop");
        let failed = of_type(&events, "turn.failed");
        assert_eq!(failed.len(), 2);
        assert_eq!(failed[1]["data"]["retryable"], false);
        assert_eq!(s.mock.requests().len(), 4, "{wire:?}");
    }
}

#[tokio::test]
async fn with_automatic_compaction_off_an_overflow_fails_at_once() {
    let turns = vec![overflow(Wire::Chat, Dialect::OpenAi)];
    let s = setup(Wire::Chat, 100_000, turns, json!({ "compaction": { "auto": false } })).await;
    let c = &s.engine.client;
    prompt(c, &s.session, "hello").await;
    let events = c.events_until(&s.sub, closed).await;
    assert_eq!(events.last().unwrap()["data"]["reason"], "failed");
    assert!(of_type(&events, "compaction.started").is_empty());
    assert_eq!(s.mock.requests().len(), 1);
}

#[tokio::test]
async fn reported_usage_past_a_small_window_compacts_before_the_next_turn() {
    for wire in Wire::ALL {
        // A 3,000-token window with a buffer of 300: 2,700 usable, room for the system prompt and the tools before
        // anything is measured. The first answer reports 2,900 in.
        let turns = vec![answer("the old answer", 2_900), answer(SUMMARY, 50), answer("the new answer", 300)];
        let s = setup(wire, 3_000, turns, json!({})).await;
        let c = &s.engine.client;
        prompt(c, &s.session, "the first question").await;
        let first = c.events_until(&s.sub, closed).await;
        assert!(of_type(&first, "compaction.started").is_empty(), "{wire:?}: nothing measured yet");
        prompt(c, &s.session, "the second question").await;
        let events = c.events_until(&s.sub, closed).await;
        assert_eq!(of_type(&events, "compaction.started")[0]["data"]["reason"], "auto", "{wire:?}");
        assert!(position(&events, "compaction.completed") < position(&events, "turn.started"), "{wire:?}");
        let completed = &of_type(&events, "compaction.completed")[0]["data"];
        assert!(completed["tokensBefore"].as_u64().unwrap() >= 2_900, "{completed}");
        assert!(completed["tokensAfter"].as_u64().unwrap() < 2_700, "{completed}");
        assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
        let requests = s.mock.requests();
        assert_eq!(requests.len(), 3, "{wire:?}");
        let next = requests[2].body.to_string();
        assert!(next.contains("ship the parser") && next.contains("the second question"), "{next}");
        assert!(!next.contains("the first question"), "{next}");

        // The new measurement (300) is under the window: the next turn does not compact again.
        s.mock.push(answer("fine", 400));
        prompt(c, &s.session, "the third question").await;
        let events = c.events_until(&s.sub, closed).await;
        assert!(of_type(&events, "compaction.started").is_empty(), "{wire:?}");
        let last = s.mock.requests()[3].body.to_string();
        assert!(last.contains("ship the parser") && !last.contains("the first question"), "{last}");
    }
}

#[tokio::test]
async fn session_compact_runs_in_order_between_queued_prompts() {
    let slow = ScriptTurn { chunk_delay_ms: 40, ..answer("one two three four five six", 100) };
    let turns = vec![slow, answer(SUMMARY, 50), answer("the answer to B", 100)];
    let s = setup(Wire::Chat, 100_000, turns, json!({})).await;
    let c = &s.engine.client;
    prompt(c, &s.session, "prompt A").await;
    let compact = c.ok("session/compact", json!({ "sessionId": s.session })).await;
    assert!(compact["inputId"].as_str().unwrap().starts_with("inp_"), "{compact}");
    prompt(c, &s.session, "prompt B").await;
    let mut events = Vec::new();
    for _ in 0..3 {
        events.extend(c.events_until(&s.sub, closed).await);
    }
    let order: Vec<&str> = types(&events)
        .into_iter()
        .filter(|t| ["activity.opened", "activity.closed", "compaction.started", "compaction.completed"].contains(t))
        .collect();
    assert_eq!(
        order,
        [
            "activity.opened",
            "activity.closed",
            "activity.opened",
            "compaction.started",
            "compaction.completed",
            "activity.closed",
            "activity.opened",
            "activity.closed"
        ]
    );
    let opened = of_type(&events, "activity.opened");
    assert_eq!(opened[1]["data"]["trigger"], "compact");
    assert_eq!(of_type(&events, "compaction.started")[0]["data"]["reason"], "manual");
    assert!(of_type(&events, "activity.closed").iter().all(|e| e["data"]["reason"] == "completed"));
    let requests = s.mock.requests();
    assert_eq!(requests.len(), 3);
    let b = requests[2].body.to_string();
    assert!(b.contains("ship the parser") && b.contains("prompt B") && !b.contains("prompt A"), "{b}");

    // The transcript keeps everything; the log too.
    let messages = c.ok("session/messages", json!({ "sessionId": s.session })).await;
    assert!(messages.to_string().contains("prompt A"));
    let unknown = c.err("session/compact", json!({ "sessionId": "ses_nope" })).await;
    assert_eq!(unknown.code, -32010);
}

#[tokio::test]
async fn old_tool_outputs_are_pruned_from_the_context_and_kept_in_the_log() {
    // Outputs of 2,000+ characters, three times, on a window where that is too much: the oldest are pruned.
    let big = "x".repeat(3_000);
    let call = |n: usize| ScriptTurn {
        tool_calls: vec![keel::provider::scripted::ScriptToolCall {
            id: Some(format!("call_{n}")),
            name: "bash".into(),
            input: json!({ "command": format!("echo {n}; head -c 3000 /dev/zero | tr '\\0' x"), "description": "print" }),
        }],
        usage: Some(ScriptUsage { input: 100, output: 10, ..Default::default() }),
        ..Default::default()
    };
    // The last answer measures 3,600 tokens in: at the usable window (4,000 − 400 of buffer).
    let turns = vec![call(1), call(2), call(3), answer("done", 3_600), answer("next", 100)];
    let extra = json!({
        "permissions": [{ "action": "*", "pattern": "*", "effect": "allow" }],
        "compaction": { "keepTokens": 1000 },
    });
    let s = setup(Wire::Chat, 4_000, turns, extra).await;
    let c = &s.engine.client;
    prompt(c, &s.session, "print things").await;
    c.events_until(&s.sub, closed).await;
    prompt(c, &s.session, "go on").await;
    let events = c.events_until(&s.sub, closed).await;
    let completed = &of_type(&events, "compaction.completed")[0]["data"];
    let pruned = completed["prunedCalls"].as_array().unwrap();
    assert_eq!(pruned.len(), 2, "the two older outputs: {completed}");
    assert!(completed["summary"].is_null(), "pruning was enough: {completed}");
    let log = c.ok("session/events", json!({ "sessionId": s.session, "afterSeq": 0, "limit": 1000 })).await;
    let outputs = log["events"].as_array().unwrap().iter().filter(|e| e["type"] == "tool.completed").count();
    assert_eq!(outputs, 3, "the log keeps every output");
    let last = s.mock.requests().last().unwrap().body.to_string();
    assert_eq!(last.matches(&big).count(), 1, "only the recent output reaches the model");
    assert_eq!(last.matches("[old tool output removed to save context]").count(), 2, "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_a_compaction_leaves_a_session_that_compacts_again_and_continues() {
    let home = Home::new();
    let mock = MockModel::start().await;
    std::fs::write(home.path().join("config.jsonc"), config(Wire::Chat, &mock, 3_000, json!({})).to_string()).unwrap();
    mock.push(answer("the old answer", 2_900));
    // The summary request hangs: the engine is killed while it waits.
    mock.push(ScriptTurn { delay_ms: 60_000, ..answer(SUMMARY, 50) });
    let ws = home.workspace();
    let a = SocketEngine::start(home.path(), &[]).await;
    let ca = a.connect().await;
    let session = ca.create_session(&ws).await;
    let sa = ca.subscribe(&session, 0).await;
    prompt(&ca, &session, "the first question").await;
    ca.events_until(&sa, closed).await;
    prompt(&ca, &session, "the second question").await;
    ca.events_until(&sa, |e| e["type"] == "compaction.started").await;
    for _ in 0..500 {
        if mock.requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut child = a.child;
    child.kill().await.unwrap();

    mock.push(answer(SUMMARY, 50));
    mock.push(answer("the new answer", 300));
    let b = SocketEngine::start(home.path(), &[]).await;
    let cb = b.connect().await;
    let sb = cb.subscribe(&session, 0).await;
    // The replay from the start: the first activity's close, then the resumed one's.
    let mut events = cb.events_until(&sb, closed).await;
    events.extend(cb.events_until(&sb, closed).await);
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed", "{:?}", types(&events));
    assert_eq!(of_type(&events, "compaction.started").len(), 2, "{:?}", types(&events));
    assert_eq!(of_type(&events, "compaction.completed").len(), 1);
    let last = mock.requests().last().unwrap().body.to_string();
    assert!(last.contains("ship the parser") && last.contains("the second question"), "{last}");
}

#[tokio::test]
async fn a_fork_before_a_compaction_has_the_whole_history_and_one_after_it_the_summary() {
    let turns = vec![answer("the old answer", 100), overflow(Wire::Chat, Dialect::OpenAi), answer(SUMMARY, 50)];
    let s = setup(Wire::Chat, 100_000, turns, json!({})).await;
    s.mock.push(answer("the new answer", 80));
    let c = &s.engine.client;
    prompt(c, &s.session, "the first question").await;
    // After the first activity's close and the status that follows it: no activity open, no compaction yet.
    let before = c.events_until(&s.sub, closed).await.last().unwrap()["seq"].as_u64().unwrap() + 1;
    prompt(c, &s.session, "the second question").await;
    c.events_until(&s.sub, closed).await;

    for (at_seq, whole) in [(Some(before), true), (None, false)] {
        let fork = c.ok("session/fork", json!({ "sessionId": s.session, "atSeq": at_seq })).await;
        let fork = fork["session"]["id"].as_str().unwrap().to_owned();
        let sub = c.subscribe(&fork, 0).await;
        s.mock.push(answer("forked", 80));
        prompt(c, &fork, "a forked question").await;
        // The fork replays the source's closed activities first; its own is the last to close.
        let log = c.ok("session/events", json!({ "sessionId": fork, "afterSeq": 0, "limit": 1000 })).await;
        let copied = log["events"].as_array().unwrap().iter().filter(|e| e["type"] == "activity.closed").count();
        for _ in 0..=copied {
            c.events_until(&sub, closed).await;
        }
        let request = s.mock.requests().last().unwrap().body.to_string();
        assert!(request.contains("a forked question"), "{request}");
        assert_eq!(request.contains("the first question"), whole, "{request}");
        assert_eq!(request.contains("ship the parser"), !whole, "{request}");
    }
}

#[tokio::test]
async fn compaction_model_writes_the_summary() {
    let turns = vec![answer("the old answer", 100), answer(SUMMARY, 50)];
    let s = setup(Wire::Chat, 100_000, turns, json!({ "compaction": { "model": "mock/summariser" } })).await;
    compact_after_one_prompt(&s).await;
    let requests = s.mock.requests();
    assert_eq!(requests[0].body["model"], "test-model");
    assert_eq!(requests[1].body["model"], "summariser");
    assert!(requests[1].body.to_string().contains("the first question"));
}

#[tokio::test]
async fn a_transient_failure_of_the_summary_request_is_retried() {
    let turns = vec![answer("the old answer", 100), failing(503, "overloaded"), answer(SUMMARY, 50)];
    let s = setup(Wire::Anthropic, 100_000, turns, json!({})).await;
    let events = compact_after_one_prompt(&s).await;
    assert_eq!(of_type(&events, "compaction.completed")[0]["data"]["summary"], SUMMARY);
    assert_eq!(s.mock.requests().len(), 3);
}

#[tokio::test]
async fn a_request_past_the_window_is_refused_without_being_sent() {
    // The first prompt alone is past a 512-token window: nothing to compact, or compaction turned off.
    for extra in [json!({}), json!({ "compaction": { "auto": false } })] {
        let s = setup(Wire::Chat, 512, Vec::new(), extra.clone()).await;
        let c = &s.engine.client;
        prompt(c, &s.session, &"a long question ".repeat(250)).await;
        let events = c.events_until(&s.sub, closed).await;
        let close = &events.last().unwrap()["data"];
        assert_eq!(close["reason"], "failed", "{extra}: {:?}", types(&events));
        let error = close["error"].as_str().unwrap();
        assert!(error.contains("the request is about"), "{extra}: {error}");
        assert!(error.contains("above the model's 512-token window"), "{extra}: {error}");
        let failed = of_type(&events, "turn.failed");
        assert_eq!(failed.len(), 1, "{extra}");
        assert_eq!(failed[0]["data"]["error"]["kind"], "context_overflow", "{extra}");
        assert_eq!(failed[0]["data"]["retryable"], false, "{extra}");
        assert!(of_type(&events, "turn.dispatched").is_empty(), "{extra}");
        assert!(s.mock.requests().is_empty(), "{extra}: nothing reaches the model");
    }
}

#[tokio::test]
async fn an_empty_stream_is_an_overflow_after_a_large_request_and_a_retry_after_a_small_one() {
    let empty = || ScriptTurn { empty: true, ..Default::default() };
    // Large: the first answer measures the context at 2,000 of a 3,000-token window (under the 2,700 usable).
    let turns = vec![answer("the old answer", 2_000), empty(), answer(SUMMARY, 50), answer("the new answer", 300)];
    let s = setup(Wire::Chat, 3_000, turns, json!({})).await;
    let c = &s.engine.client;
    prompt(c, &s.session, "the first question").await;
    c.events_until(&s.sub, closed).await;
    prompt(c, &s.session, "the second question").await;
    let events = c.events_until(&s.sub, closed).await;
    let failed = of_type(&events, "turn.failed");
    assert_eq!(failed.len(), 1, "{:?}", types(&events));
    assert_eq!(failed[0]["data"]["error"]["kind"], "context_overflow");
    let message = failed[0]["data"]["error"]["message"].as_str().unwrap();
    assert!(message.contains("stream ended empty"), "{message}");
    assert!(of_type(&events, "retry.scheduled").is_empty(), "{:?}", types(&events));
    assert_eq!(of_type(&events, "compaction.started")[0]["data"]["reason"], "overflow");
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    assert_eq!(s.mock.requests().len(), 4);

    // Small: the same empty stream is a transient cut, retried.
    let s = setup(Wire::Chat, 100_000, vec![empty(), answer("the answer", 100)], json!({})).await;
    let c = &s.engine.client;
    prompt(c, &s.session, "a question").await;
    let events = c.events_until(&s.sub, closed).await;
    let retries = of_type(&events, "retry.scheduled");
    assert_eq!(retries.len(), 1, "{:?}", types(&events));
    assert_eq!(retries[0]["data"]["error"]["kind"], "interrupted_stream");
    assert!(of_type(&events, "compaction.started").is_empty());
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    assert_eq!(s.mock.requests().len(), 2);
}
