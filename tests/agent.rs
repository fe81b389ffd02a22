//! The agent loop against a mock model speaking each wire format: turns, tools, steer, queue, interrupt, retries,
//! failures, step limits and concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::mock::{Dialect, MockModel, Wire};
use common::{Client, Engine, Framing, Home};
use keel::provider::scripted::{ScriptError, ScriptToolCall, ScriptTurn, ScriptUsage};
use serde_json::{Value, json};

const KEY: &str = "sk-test-VERYSECRET-0123456789";

fn text(t: &str) -> ScriptTurn {
    ScriptTurn {
        text: Some(t.into()),
        usage: Some(ScriptUsage { input: 100, output: 20, ..Default::default() }),
        ..Default::default()
    }
}

fn tool_call(name: &str, input: Value) -> ScriptTurn {
    ScriptTurn {
        text: Some("Working on it.".into()),
        tool_calls: vec![ScriptToolCall { id: None, name: name.into(), input }],
        usage: Some(ScriptUsage { input: 50, output: 10, ..Default::default() }),
        ..Default::default()
    }
}

fn slow(t: &str, chunk_delay_ms: u64) -> ScriptTurn {
    ScriptTurn { chunk_delay_ms, ..text(t) }
}

fn todo_input() -> Value {
    json!({ "todos": [{ "content": "write tests", "status": "in_progress" }] })
}

fn config(wire: Wire, mock: &MockModel, extra: Value) -> Value {
    let mut config = json!({
        "model": "mock/test-model",
        "providers": { "mock": {
            "wire": wire.config_name(), "baseUrl": mock.url(), "apiKey": KEY,
            "models": { "test-model": { "contextWindow": 100000, "maxOutputTokens": 1000,
                                        "cost": { "input": 1.0, "output": 2.0, "cacheRead": 0.0, "cacheWrite": 0.0 } } } } }
    });
    merge(&mut config, extra);
    config
}

/// `extra` laid over `base`, objects merged key by key.
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (k, v) in extra {
                merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (base, extra) => *base = extra,
    }
}

struct Setup {
    home: Home,
    mock: MockModel,
    engine: Engine,
    session: String,
    sub: String,
}

async fn setup(wire: Wire, turns: Vec<ScriptTurn>, extra: Value) -> Setup {
    let home = Home::new();
    let mock = MockModel::start().await;
    for turn in turns {
        mock.push(turn);
    }
    std::fs::write(home.path().join("config.jsonc"), config(wire, &mock, extra).to_string()).unwrap();
    let engine = Engine::start_with(home.path(), Framing::Ndjson, &[("KEEL_RETRY_BASE_MS", "20")]).await;
    engine
        .client
        .ok(
            "initialize",
            json!({ "protocolVersion": 1, "clientInfo": { "name": "t" }, "capabilities": { "deltas": true } }),
        )
        .await;
    let session = engine.client.create_session(&home.workspace()).await;
    let sub = engine.client.subscribe(&session, 0).await;
    Setup { home, mock, engine, session, sub }
}

async fn prompt(c: &Client, session: &str, text: &str, delivery: &str) -> Value {
    c.ok(
        "session/prompt",
        json!({ "sessionId": session, "input": [{ "type": "text", "text": text }], "delivery": delivery }),
    )
    .await
}

/// Everything the subscription delivers until `stop` matches an event: (events, deltas).
async fn until(c: &Client, sub: &str, stop: impl Fn(&Value) -> bool) -> (Vec<Value>, Vec<Value>) {
    let mut events = Vec::new();
    let mut deltas = Vec::new();
    loop {
        let m = c.next_message().await;
        match m["method"].as_str().unwrap_or_default() {
            "session/event" if m["params"]["subscriptionId"] == sub => {
                let event = m["params"]["event"].clone();
                let done = stop(&event);
                events.push(event);
                if done {
                    return (events, deltas);
                }
            }
            "session/delta" => deltas.push(m["params"].clone()),
            _ => {}
        }
    }
}

fn closed(reason: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["type"] == "activity.closed" && e["data"]["reason"] == reason
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The text of every user message a request carried, whatever the wire.
fn user_texts(wire: Wire, body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let items = match wire {
        Wire::Responses => body["input"].as_array().cloned().unwrap_or_default(),
        _ => body["messages"].as_array().cloned().unwrap_or_default(),
    };
    for m in items.iter().filter(|m| m["role"] == "user") {
        match &m["content"] {
            Value::String(s) => out.push(s.clone()),
            Value::Array(parts) => {
                out.extend(parts.iter().filter_map(|p| p["text"].as_str().map(str::to_owned)));
            }
            _ => {}
        }
    }
    out
}

/// The tool results a request carried back to the model.
fn tool_results(wire: Wire, body: &Value) -> Vec<String> {
    match wire {
        Wire::Chat => body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect(),
        Wire::Responses => body["input"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "function_call_output")
            .map(|i| i["output"].as_str().unwrap().to_owned())
            .collect(),
        Wire::Anthropic => body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
            .filter(|b| b["type"] == "tool_result")
            .map(|b| b["content"].as_str().unwrap().to_owned())
            .collect(),
    }
}

#[tokio::test]
async fn a_text_turn_in_every_wire_format() {
    for wire in Wire::ALL {
        let s = setup(
            wire,
            vec![ScriptTurn { reasoning: Some("Let me think.".into()), ..text("Hello from the mock model.") }],
            json!({}),
        )
        .await;
        let c = &s.engine.client;
        let receipt = prompt(c, &s.session, "Say hello", "queue").await;
        assert_eq!(receipt["disposition"], "started", "{wire:?}");
        assert_eq!(receipt["delivery"], "queue");
        let (events, deltas) = until(c, &s.sub, closed("completed")).await;
        let texts = of_type(&events, "text.completed");
        assert_eq!(texts.len(), 1, "{wire:?}: {events:#?}");
        assert_eq!(texts[0]["data"]["text"], "Hello from the mock model.");
        assert_eq!(of_type(&events, "reasoning.completed")[0]["data"]["text"], "Let me think.", "{wire:?}");
        let streamed: String =
            deltas.iter().filter(|d| d["kind"] == "text").map(|d| d["delta"].as_str().unwrap()).collect();
        assert_eq!(streamed, "Hello from the mock model.", "{wire:?}: deltas must add up to the text");
        let completed = of_type(&events, "turn.completed")[0];
        assert_eq!(completed["data"]["usage"]["inputTokens"], 100, "{wire:?}");
        assert_eq!(completed["data"]["usage"]["outputTokens"], 20, "{wire:?}");
        assert!((completed["data"]["costUsd"].as_f64().unwrap() - 0.00014).abs() < 1e-12);
        let order: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        let pos = |t: &str| order.iter().position(|o| *o == t).unwrap();
        assert!(pos("input.admitted") < pos("activity.opened") && pos("activity.opened") < pos("input.promoted"));
        assert!(pos("turn.started") < pos("text.completed") && pos("text.completed") < pos("turn.completed"));

        let requests = s.mock.requests();
        assert_eq!(requests.len(), 1);
        let body = &requests[0].body;
        assert_eq!(body["model"], "test-model", "{wire:?}");
        assert_eq!(body["stream"], true);
        assert_eq!(user_texts(wire, body), ["Say hello"], "{wire:?}");
        match wire {
            Wire::Anthropic => assert_eq!(requests[0].header("x-api-key"), Some(KEY)),
            _ => assert_eq!(requests[0].header("authorization"), Some(format!("Bearer {KEY}").as_str())),
        }
        let session = c.ok("session/get", json!({ "sessionId": s.session })).await;
        assert_eq!(session["session"]["usage"]["inputTokens"], 100);
        assert_eq!(session["status"], "idle");
        let messages = c.ok("session/messages", json!({ "sessionId": s.session })).await;
        let roles: Vec<_> = messages["messages"].as_array().unwrap().iter().map(|m| m["role"].clone()).collect();
        assert_eq!(roles, [json!("user"), json!("assistant")]);
    }
}

#[tokio::test]
async fn a_tool_call_runs_and_its_result_loops_back() {
    for wire in Wire::ALL {
        let s = setup(wire, vec![tool_call("todowrite", todo_input()), text("Planned.")], json!({})).await;
        let c = &s.engine.client;
        prompt(c, &s.session, "Plan the work", "queue").await;
        let (events, _) = until(c, &s.sub, closed("completed")).await;
        let called = of_type(&events, "tool.called");
        assert_eq!(called.len(), 1, "{wire:?}");
        assert_eq!(called[0]["data"]["tool"], "todowrite");
        assert_eq!(called[0]["data"]["input"], todo_input(), "{wire:?}: arguments must be reassembled from the stream");
        let call_id = called[0]["data"]["callId"].clone();
        let done = of_type(&events, "tool.completed");
        assert_eq!(done[0]["data"]["callId"], call_id);
        assert!(done[0]["data"]["output"].as_str().unwrap().contains("[~] write tests"));
        assert_eq!(of_type(&events, "turn.started").len(), 2, "{wire:?}");
        assert_eq!(of_type(&events, "turn.completed")[0]["data"]["finishReason"], "tool_calls");

        let requests = s.mock.requests();
        assert_eq!(requests.len(), 2);
        let results = tool_results(wire, &requests[1].body);
        assert_eq!(results.len(), 1, "{wire:?}: {}", requests[1].body);
        assert!(results[0].contains("[~] write tests"));
        assert!(requests[1].body.to_string().contains("todowrite"), "the call goes back with its result");
    }
}

/// The provider's ids the tool results and the assistant's calls of a request carried, in order.
fn replayed_call_ids(wire: Wire, body: &Value) -> (Vec<String>, Vec<String>) {
    let s = |v: &Value| v.as_str().unwrap().to_owned();
    match wire {
        Wire::Chat => {
            let messages = body["messages"].as_array().unwrap();
            let calls = messages.iter().flat_map(|m| m["tool_calls"].as_array().cloned().unwrap_or_default());
            let results = messages.iter().filter(|m| m["role"] == "tool").map(|m| s(&m["tool_call_id"]));
            (results.collect(), calls.map(|c| s(&c["id"])).collect())
        }
        Wire::Responses => {
            let input = body["input"].as_array().unwrap();
            let of = |kind: &str| input.iter().filter(|i| i["type"] == kind).map(|i| s(&i["call_id"])).collect();
            (of("function_call_output"), of("function_call"))
        }
        Wire::Anthropic => {
            let blocks: Vec<Value> = body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
                .collect();
            let results = blocks.iter().filter(|b| b["type"] == "tool_result").map(|b| s(&b["tool_use_id"]));
            let calls = blocks.iter().filter(|b| b["type"] == "tool_use").map(|b| s(&b["id"]));
            (results.collect(), calls.collect())
        }
    }
}

#[tokio::test]
async fn tool_calls_get_ids_of_their_own_while_the_provider_gets_its_ids_back() {
    for wire in Wire::ALL {
        // A server that gives every call the same id, turn after turn, as the scripted player used to and some
        // OpenAI-compatible servers do.
        let same_id = |n: usize| ScriptTurn {
            tool_calls: vec![ScriptToolCall {
                id: Some("call_0".into()),
                name: "todowrite".into(),
                input: json!({ "todos": [{ "content": format!("step {n}"), "status": "pending" }] }),
            }],
            ..Default::default()
        };
        let s = setup(wire, vec![same_id(1), same_id(2), same_id(3), text("Done.")], json!({})).await;
        let c = &s.engine.client;
        prompt(c, &s.session, "Plan in three steps", "queue").await;
        let (events, deltas) = until(c, &s.sub, closed("completed")).await;
        let called = of_type(&events, "tool.called");
        assert_eq!(called.len(), 3, "{wire:?}");
        let ids: Vec<&str> = called.iter().map(|e| e["data"]["callId"].as_str().unwrap()).collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 3, "{wire:?}: {ids:?}");
        for (event, id) in called.iter().zip(&ids) {
            assert!(id.starts_with("call_") && *id != "call_0", "{wire:?}: {id}");
            assert_eq!(event["data"]["providerCallId"], "call_0", "{wire:?}");
        }
        // Every later event of a call names it by keel's id, and so do the streamed fragments of its input.
        let completed: Vec<&str> =
            of_type(&events, "tool.completed").iter().map(|e| e["data"]["callId"].as_str().unwrap()).collect();
        assert_eq!(completed, ids, "{wire:?}");
        let input_parts: std::collections::HashSet<&str> =
            deltas.iter().filter(|d| d["kind"] == "tool_input").map(|d| d["partId"].as_str().unwrap()).collect();
        assert!(input_parts.iter().all(|p| distinct.contains(p)), "{wire:?}: {input_parts:?} vs {ids:?}");
        let messages = c.ok("session/messages", json!({ "sessionId": s.session })).await;
        let parts: Vec<Value> = messages["messages"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| m["parts"].as_array().cloned().unwrap_or_default())
            .filter(|p| p["type"] == "tool")
            .collect();
        let part_ids: Vec<&str> = parts.iter().map(|p| p["callId"].as_str().unwrap()).collect();
        assert_eq!(part_ids, ids, "{wire:?}");

        // The provider is answered in its own ids, the call and its result alike.
        let requests = s.mock.requests();
        assert_eq!(requests.len(), 4, "{wire:?}");
        let (results, calls) = replayed_call_ids(wire, &requests[3].body);
        assert_eq!(results, ["call_0"; 3], "{wire:?}: {}", requests[3].body);
        assert_eq!(calls, ["call_0"; 3], "{wire:?}: {}", requests[3].body);
    }
}

#[tokio::test]
async fn calls_without_an_id_from_the_script_get_realistic_distinct_provider_ids() {
    for wire in Wire::ALL {
        let s = setup(
            wire,
            vec![tool_call("todowrite", todo_input()), tool_call("todowrite", todo_input()), text("Done.")],
            json!({}),
        )
        .await;
        let c = &s.engine.client;
        prompt(c, &s.session, "Plan twice", "queue").await;
        let (events, _) = until(c, &s.sub, closed("completed")).await;
        let provider_ids: Vec<String> = of_type(&events, "tool.called")
            .iter()
            .map(|e| e["data"]["providerCallId"].as_str().unwrap().to_owned())
            .collect();
        let prefix = if wire == Wire::Anthropic { "toolu_" } else { "call_" };
        assert_eq!(provider_ids.len(), 2, "{wire:?}");
        assert_ne!(provider_ids[0], provider_ids[1], "{wire:?}");
        assert!(
            provider_ids.iter().all(|id| id.starts_with(prefix) && id.len() > prefix.len() + 8),
            "{provider_ids:?}"
        );
        let (results, _) = replayed_call_ids(wire, &s.mock.requests()[2].body);
        assert_eq!(results, provider_ids, "{wire:?}");
    }
}

#[tokio::test]
async fn invalid_tool_input_and_unknown_tools_are_errors_the_model_sees() {
    let s = setup(
        Wire::Chat,
        vec![
            ScriptTurn {
                tool_calls: vec![
                    ScriptToolCall {
                        id: Some("c1".into()),
                        name: "todowrite".into(),
                        input: json!({ "todos": "nope" }),
                    },
                    ScriptToolCall { id: Some("c2".into()), name: "no_such_tool".into(), input: json!({}) },
                ],
                ..Default::default()
            },
            text("Sorry."),
        ],
        json!({}),
    )
    .await;
    let c = &s.engine.client;
    prompt(c, &s.session, "go", "queue").await;
    let (events, _) = until(c, &s.sub, closed("completed")).await;
    let failed = of_type(&events, "tool.failed");
    assert_eq!(failed.len(), 2);
    let results = tool_results(Wire::Chat, &s.mock.requests()[1].body);
    assert!(results.iter().any(|r| r.contains("invalid input for todowrite")), "{results:?}");
    assert!(results.iter().any(|r| r.contains("unknown tool")), "{results:?}");
}

#[tokio::test]
async fn a_steer_during_a_slow_stream_lands_in_the_next_turn_of_the_same_activity() {
    for wire in Wire::ALL {
        let s = setup(
            wire,
            vec![
                tool_call("todowrite", todo_input()),
                slow("one two three four five six seven eight", 60),
                text("Noted."),
            ],
            json!({}),
        )
        .await;
        let c = &s.engine.client;
        prompt(c, &s.session, "Start", "queue").await;
        // Wait until the second (slow) turn streams, then steer.
        let _ = until(c, &s.sub, |e| e["type"] == "turn.started" && e["seq"].as_u64().unwrap() > 8).await;
        let steer = prompt(c, &s.session, "Also mention tests", "steer").await;
        assert_eq!(steer["disposition"], "steered", "{wire:?}");
        let (events, _) = until(c, &s.sub, closed("completed")).await;
        assert!(of_type(&events, "activity.opened").is_empty(), "{wire:?}: the steer must not open a new activity");
        let promoted = of_type(&events, "input.promoted");
        assert_eq!(promoted.len(), 1);
        assert_eq!(promoted[0]["data"]["inputIds"][0], steer["inputId"]);
        let requests = s.mock.requests();
        assert_eq!(requests.len(), 3, "{wire:?}");
        assert_eq!(
            user_texts(wire, &requests[1].body),
            ["Start"],
            "{wire:?}: the turn already streaming is not changed"
        );
        assert_eq!(user_texts(wire, &requests[2].body), ["Start", "Also mention tests"], "{wire:?}");
    }
}

#[tokio::test]
async fn queued_prompts_open_one_activity_each_in_order() {
    for wire in Wire::ALL {
        let s =
            setup(wire, vec![slow("first answer", 30), text("second answer"), text("third answer")], json!({})).await;
        let c = &s.engine.client;
        let a = prompt(c, &s.session, "one", "queue").await;
        let b = prompt(c, &s.session, "two", "queue").await;
        let d = prompt(c, &s.session, "three", "queue").await;
        assert_eq!(a["disposition"], "started");
        assert_eq!(
            (b["disposition"].as_str(), d["disposition"].as_str()),
            (Some("queued"), Some("queued")),
            "{wire:?}"
        );
        let mut activities = Vec::new();
        while activities.len() < 3 {
            let (events, _) = until(c, &s.sub, closed("completed")).await;
            let promoted = of_type(&events, "input.promoted");
            assert_eq!(promoted.len(), 1, "{wire:?}: each activity promotes exactly one queued input");
            activities.push(promoted[0]["data"]["inputIds"][0].clone());
        }
        assert_eq!(activities, [a["inputId"].clone(), b["inputId"].clone(), d["inputId"].clone()]);
        let requests = s.mock.requests();
        assert_eq!(user_texts(wire, &requests[2].body), ["one", "two", "three"], "{wire:?}");
    }
}

#[tokio::test]
async fn interrupt_aborts_the_stream_keeps_and_pauses_the_queue_and_resume_restarts_it() {
    for wire in Wire::ALL {
        let long = "word ".repeat(200);
        let s = setup(wire, vec![slow(&long, 20), text("the queued one ran")], json!({})).await;
        let c = &s.engine.client;
        prompt(c, &s.session, "long task", "queue").await;
        let queued = prompt(c, &s.session, "later", "queue").await;
        assert_eq!(queued["disposition"], "queued");
        let _ = until(c, &s.sub, |e| e["type"] == "turn.started").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = c.ok("session/interrupt", json!({ "sessionId": s.session })).await;
        assert_eq!(r["interrupted"], true);
        let (events, _) = until(c, &s.sub, closed("interrupted")).await;
        assert!(of_type(&events, "turn.completed").is_empty());
        let got = c.ok("session/get", json!({ "sessionId": s.session })).await;
        assert_eq!(got["queuePaused"], true, "{wire:?}");
        assert_eq!(got["pendingInputs"][0]["inputId"], queued["inputId"]);
        assert_eq!(got["status"], "idle");
        assert_eq!(s.mock.requests().len(), 1, "{wire:?}: the queue must stay paused");
        let again = c.ok("session/interrupt", json!({ "sessionId": s.session })).await;
        assert_eq!(again["interrupted"], false);

        let resumed = c.ok("session/resume", json!({ "sessionId": s.session })).await;
        assert_eq!(resumed["started"], true);
        let (events, _) = until(c, &s.sub, closed("completed")).await;
        assert_eq!(of_type(&events, "input.promoted")[0]["data"]["inputIds"][0], queued["inputId"]);
        assert_eq!(of_type(&events, "text.completed")[0]["data"]["text"], "the queued one ran");
        assert_eq!(c.ok("session/get", json!({ "sessionId": s.session })).await["queuePaused"], false);
    }
}

#[tokio::test]
async fn input_ids_make_admission_idempotent() {
    let s = setup(Wire::Chat, vec![text("ok")], json!({})).await;
    let c = &s.engine.client;
    let params = json!({ "sessionId": s.session, "inputId": "client-1", "input": [{ "type": "text", "text": "hi" }] });
    let first = c.ok("session/prompt", params.clone()).await;
    let second = c.ok("session/prompt", params.clone()).await;
    assert_eq!(first, second);
    let mut other = params.clone();
    other["input"][0]["text"] = json!("something else");
    let e = c.err("session/prompt", other).await;
    assert_eq!(e.code, -32011);
    until(c, &s.sub, closed("completed")).await;
    let admitted = c.ok("session/events", json!({ "sessionId": s.session, "afterSeq": 0 })).await;
    let count = admitted["events"].as_array().unwrap().iter().filter(|e| e["type"] == "input.admitted").count();
    assert_eq!(count, 1);
    assert_eq!(s.mock.requests().len(), 1);
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_visibly() {
    for wire in Wire::ALL {
        let rate_limited = ScriptTurn {
            error: Some(ScriptError { status: 429, message: "slow down".into(), retry_after: Some(0.1) }),
            ..Default::default()
        };
        let overloaded = ScriptTurn {
            error: Some(ScriptError { status: 503, message: "overloaded".into(), retry_after: None }),
            ..Default::default()
        };
        let s = setup(wire, vec![rate_limited, overloaded, text("finally")], json!({})).await;
        let c = &s.engine.client;
        prompt(c, &s.session, "hi", "queue").await;
        let (events, _) = until(c, &s.sub, closed("completed")).await;
        let retries = of_type(&events, "retry.scheduled");
        assert_eq!(retries.len(), 2, "{wire:?}");
        assert_eq!(retries[0]["data"]["attempt"], 1);
        assert_eq!(retries[0]["data"]["delayMs"], 100, "{wire:?}: retry-after is honoured");
        assert_eq!(retries[0]["data"]["error"]["kind"], "rate_limited");
        assert_eq!(retries[1]["data"]["error"]["status"], 503);
        let statuses: Vec<_> = of_type(&events, "session.status").iter().map(|e| e["data"]["status"].clone()).collect();
        assert!(statuses.contains(&json!("retrying")));
        assert_eq!(of_type(&events, "turn.started").len(), 1, "retries belong to the same turn");
        assert_eq!(s.mock.requests().len(), 3);
    }
}

#[tokio::test]
async fn a_stream_cut_after_output_fails_the_turn_without_a_retry() {
    for wire in Wire::ALL {
        let cut = ScriptTurn { cut: true, ..text("partial answer that") };
        let s = setup(wire, vec![cut, text("should not be asked for")], json!({})).await;
        let c = &s.engine.client;
        prompt(c, &s.session, "hi", "queue").await;
        let (events, _) = until(c, &s.sub, closed("failed")).await;
        let failed = of_type(&events, "turn.failed");
        assert_eq!(failed.len(), 1, "{wire:?}");
        assert_eq!(failed[0]["data"]["error"]["kind"], "interrupted_stream", "{wire:?}");
        assert!(of_type(&events, "retry.scheduled").is_empty());
        assert_eq!(
            of_type(&events, "text.completed")[0]["data"]["text"],
            "partial answer that",
            "what was shown is kept"
        );
        assert_eq!(s.mock.requests().len(), 1, "{wire:?}: an ambiguous attempt is never retried");
        assert_eq!(c.ok("session/get", json!({ "sessionId": s.session })).await["status"], "failed");
    }
}

#[tokio::test]
async fn malformed_streams_and_bad_keys_fail_with_clear_errors_and_no_secret_leaks() {
    for wire in Wire::ALL {
        let unauthorized = ScriptTurn {
            error: Some(ScriptError {
                status: 401,
                message: format!("Incorrect API key provided: {KEY}"),
                retry_after: None,
            }),
            ..Default::default()
        };
        let garbage = ScriptTurn { garbage: true, ..Default::default() };
        let s = setup(wire, vec![unauthorized, garbage], json!({})).await;
        let c = &s.engine.client;
        prompt(c, &s.session, "hi", "queue").await;
        let (events, _) = until(c, &s.sub, closed("failed")).await;
        let failure = &of_type(&events, "turn.failed")[0]["data"];
        assert_eq!(failure["error"]["kind"], "unauthorized", "{wire:?}");
        assert_eq!(failure["error"]["status"], 401);
        assert!(failure["error"]["message"].as_str().unwrap().contains("[redacted]"), "{failure}");

        prompt(c, &s.session, "again", "queue").await;
        let (events, _) = until(c, &s.sub, closed("failed")).await;
        assert_eq!(of_type(&events, "turn.failed")[0]["data"]["error"]["kind"], "malformed_stream", "{wire:?}");

        let listed = c.ok("auth/list", json!({})).await;
        let config = c.ok("config/get", json!({})).await;
        for answer in [listed, config] {
            assert!(!answer.to_string().contains("VERYSECRET"), "{answer}");
        }
        let stored = common::stored_bytes(s.home.path());
        assert!(!stored.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "{wire:?}: the key reached the database");
    }
}

#[tokio::test]
async fn the_step_limit_closes_the_activity_and_new_input_renews_it() {
    let turns = (0..3).map(|_| tool_call("todowrite", todo_input())).collect();
    let s = setup(Wire::Chat, turns, json!({ "agents": { "build": { "steps": 2 } } })).await;
    let c = &s.engine.client;
    prompt(c, &s.session, "loop forever", "queue").await;
    let (events, _) = until(c, &s.sub, |e| e["type"] == "activity.closed").await;
    let closed_event = of_type(&events, "activity.closed")[0];
    assert_eq!(closed_event["data"]["reason"], "turn_limit");
    assert_eq!(of_type(&events, "activity.opened")[0]["data"]["stepLimit"], 2);
    assert_eq!(of_type(&events, "turn.started").len(), 2);
    assert_eq!(s.mock.requests().len(), 2);
}

#[tokio::test]
async fn two_sessions_run_at_once() {
    let s =
        setup(Wire::Chat, vec![slow("alpha beta gamma delta", 80), slow("one two three four", 80)], json!({})).await;
    let c = &s.engine.client;
    let other = c.create_session(&s.home.workspace()).await;
    let other_sub = c.subscribe(&other, 0).await;
    prompt(c, &s.session, "first", "queue").await;
    prompt(c, &other, "second", "queue").await;
    let mut closed_sessions = Vec::new();
    while closed_sessions.len() < 2 {
        let m = c.next_message().await;
        if m["method"] == "session/event" && m["params"]["event"]["type"] == "activity.closed" {
            assert_eq!(m["params"]["event"]["data"]["reason"], "completed");
            closed_sessions.push(m["params"]["subscriptionId"].clone());
        }
    }
    assert!(closed_sessions.contains(&json!(s.sub)) && closed_sessions.contains(&json!(other_sub)));
    assert_eq!(s.mock.max_in_flight(), 2, "the two streams must overlap");
}

#[tokio::test]
async fn resume_without_input_makes_one_attempt_and_concurrent_resumes_join() {
    let s = setup(Wire::Chat, vec![slow("resumed answer here", 50)], json!({})).await;
    let c = &s.engine.client;
    let (a, b) = tokio::join!(
        c.call("session/resume", json!({ "sessionId": s.session })),
        c.call("session/resume", json!({ "sessionId": s.session }))
    );
    let started: Vec<bool> = [a.unwrap(), b.unwrap()].iter().map(|r| r["started"].as_bool().unwrap()).collect();
    assert_eq!(started.iter().filter(|s| **s).count(), 1, "{started:?}");
    let (events, _) = until(c, &s.sub, closed("completed")).await;
    assert_eq!(of_type(&events, "activity.opened")[0]["data"]["trigger"], "resume");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.mock.requests().len(), 1, "joined resumes make one run");
}

#[tokio::test]
async fn unknown_providers_are_refused_before_admission() {
    let s = setup(Wire::Chat, vec![], json!({})).await;
    let c = &s.engine.client;
    let e = c
        .err(
            "session/prompt",
            json!({ "sessionId": s.session, "model": "nowhere/model", "input": [{ "type": "text", "text": "x" }] }),
        )
        .await;
    assert_eq!(e.code, -32013);
    assert!(e.message.contains("nowhere"));
    let e = c.err("session/create", json!({ "cwd": s.home.workspace(), "model": "nowhere/m" })).await;
    assert_eq!(e.code, -32013);
    let e = c.err("session/prompt", json!({ "sessionId": s.session, "input": [] })).await;
    assert_eq!((e.code, e.data["path"].as_str()), (-32602, Some("input")));
}

#[tokio::test]
async fn models_providers_tools_and_config_are_listed() {
    let s = setup(Wire::Anthropic, vec![], json!({})).await;
    let c = &s.engine.client;
    let models = c.ok("model/list", json!({})).await;
    let models = models["models"].as_array().unwrap();
    let mock = models.iter().find(|m| m["id"] == "mock/test-model").unwrap();
    assert_eq!(mock["contextWindow"], 100000);
    assert_eq!(mock["available"], true);
    assert_eq!(mock["source"], "config");
    let sonnet = models.iter().find(|m| m["id"] == "anthropic/claude-sonnet-4-5").unwrap();
    assert_eq!(sonnet["available"], false, "no key in this environment");
    assert!(models.iter().any(|m| m["id"] == "scripted/default" && m["source"] == "runtime"));
    let providers = c.ok("provider/list", json!({})).await;
    let mock = providers["providers"].as_array().unwrap().iter().find(|p| p["id"] == "mock").unwrap().clone();
    assert_eq!(mock["wire"], "anthropic");
    assert_eq!(mock["source"], "config");
    let tools = c.ok("tool/list", json!({})).await;
    assert!(
        tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "todowrite" && t["inputSchema"]["type"] == "object")
    );
    let config = c.ok("config/get", json!({})).await;
    assert_eq!(config["config"]["providers"]["mock"]["apiKey"], "[redacted]");
    assert_eq!(config["layers"][0]["source"], "global");
}

#[tokio::test]
async fn auth_store_is_private_and_never_echoes_keys() {
    let s = setup(Wire::Chat, vec![], json!({})).await;
    let c = &s.engine.client;
    c.ok("auth/set", json!({ "provider": "openai", "apiKey": "sk-stored-SECRET" })).await;
    let listed = c.ok("auth/list", json!({})).await;
    assert_eq!(listed["entries"], json!([{ "provider": "openai", "kind": "api_key", "source": "store" }]));
    let path = s.home.path().join("auth.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let models = c.ok("model/list", json!({ "provider": "openai" })).await;
    assert!(models["models"].as_array().unwrap().iter().all(|m| m["available"] == true));
    assert_eq!(c.ok("auth/remove", json!({ "provider": "openai" })).await["removed"], true);
    assert_eq!(c.ok("auth/remove", json!({ "provider": "openai" })).await["removed"], false);
}

#[tokio::test]
async fn a_prompt_sent_right_after_an_interrupt_runs() {
    let long = "word ".repeat(200);
    let s = setup(Wire::Chat, vec![slow(&long, 20), text("the next prompt ran")], json!({})).await;
    let c = &s.engine.client;
    prompt(c, &s.session, "long task", "queue").await;
    let _ = until(c, &s.sub, |e| e["type"] == "turn.started").await;
    // Let the mock start streaming, so that the long answer is the one interrupted.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = c.ok("session/interrupt", json!({ "sessionId": s.session })).await;
    assert_eq!(r["interrupted"], true);
    prompt(c, &s.session, "right after", "queue").await;
    let (events, _) = until(c, &s.sub, closed("completed")).await;
    assert_eq!(of_type(&events, "text.completed").last().unwrap()["data"]["text"], "the next prompt ran");
    assert!(events.iter().any(|e| e["type"] == "activity.closed" && e["data"]["reason"] == "interrupted"));
    assert_eq!(c.ok("session/get", json!({ "sessionId": s.session })).await["queuePaused"], false);
}

#[tokio::test]
async fn a_llama_cpp_server_repeating_names_runs_a_two_step_tool_loop() {
    let silent = ScriptTurn { text: None, ..tool_call("todowrite", todo_input()) };
    let steps = vec![silent, tool_call("todowrite", todo_input()), text("done")];
    let s = setup(Wire::Chat, steps, json!({})).await;
    s.mock.dialect(Dialect::LlamaCpp);
    let c = &s.engine.client;
    prompt(c, &s.session, "plan it", "queue").await;
    let (events, _) = until(c, &s.sub, |e| e["type"] == "activity.closed").await;
    assert_eq!(of_type(&events, "activity.closed")[0]["data"]["reason"], "completed");
    let called: Vec<_> = of_type(&events, "tool.called").iter().map(|e| e["data"]["tool"].clone()).collect();
    assert_eq!(called, [json!("todowrite"), json!("todowrite")], "the repeated name is not appended");
    assert_eq!(of_type(&events, "tool.completed").len(), 2);
    let requests = s.mock.requests();
    assert_eq!(requests.len(), 3);
    let messages = requests[2].body["messages"].as_array().unwrap();
    let contents: Vec<_> = messages
        .iter()
        .filter(|m| m["role"] == "assistant" && m["tool_calls"].is_array())
        .map(|m| &m["content"])
        .collect();
    assert_eq!(contents, [&json!(""), &json!("Working on it.")], "content is a string, never null");
}

/// What a request asked of the model's reasoning, on each wire: Chat's `reasoning_effort`, Responses'
/// `reasoning.effort`, Anthropic's thinking budget.
fn effort_sent(wire: Wire, body: &Value) -> Value {
    match wire {
        Wire::Chat => body["reasoning_effort"].clone(),
        Wire::Responses => body["reasoning"]["effort"].clone(),
        Wire::Anthropic => body["thinking"]["budget_tokens"].clone(),
    }
}

#[tokio::test]
async fn the_reasoning_effort_comes_from_the_session_the_agent_or_the_config_and_only_for_models_that_reason() {
    let reasoning_model = json!({ "providers": { "mock": { "models": {
        "test-model": { "reasoning": true, "maxOutputTokens": 64000 }, "plain": {} } } } });
    for wire in Wire::ALL {
        let mut extra = reasoning_model.clone();
        merge(&mut extra, json!({ "reasoningEffort": "medium", "agents": { "plan": { "reasoningEffort": "high" } } }));
        let s = setup(wire, (0..4).map(|_| text("ok")).collect(), extra).await;
        let c = &s.engine.client;
        let mut sent = Vec::new();
        // The config's effort; the agent's; the session's own over both; none for a model that does not reason.
        for (agent, model, update) in [
            (None, None, None),
            (Some("plan"), None, None),
            (Some("plan"), None, Some("low")),
            (None, Some("mock/plain"), None),
        ] {
            if let Some(effort) = update {
                let updated =
                    c.ok("session/update", json!({ "sessionId": s.session, "reasoningEffort": effort })).await;
                assert_eq!(updated["session"]["reasoningEffort"], effort);
            }
            let mut params = json!({ "sessionId": s.session, "input": [{ "type": "text", "text": "think" }] });
            if let Some(agent) = agent {
                params["agent"] = json!(agent);
            }
            if let Some(model) = model {
                params["model"] = json!(model);
            }
            c.ok("session/prompt", params).await;
            until(c, &s.sub, closed("completed")).await;
            let requests = s.mock.requests();
            sent.push(effort_sent(wire, &requests.last().unwrap().body));
        }
        let expected = match wire {
            // Anthropic's budget: at most half of `max_tokens` (32000 here, keel's cap).
            Wire::Anthropic => [json!(10000), json!(16000), json!(4000), Value::Null],
            _ => [json!("medium"), json!("high"), json!("low"), Value::Null],
        };
        assert_eq!(sent, expected, "{wire:?}");
        let got = c.ok("session/get", json!({ "sessionId": s.session })).await;
        assert_eq!(got["session"]["reasoningEffort"], "low");
        let e = c.err("session/update", json!({ "sessionId": s.session, "reasoningEffort": "extreme" })).await;
        assert_eq!(e.code, -32602, "{e:?}");
    }
}

#[tokio::test]
async fn anthropic_thinking_goes_back_sealed_with_the_tool_results_of_its_turn() {
    let thinking_call =
        ScriptTurn { reasoning: Some("I should plan first.".into()), ..tool_call("todowrite", todo_input()) };
    let extra = json!({ "reasoningEffort": "low", "providers": { "mock": { "models": { "test-model": { "reasoning": true } } } } });
    let s = setup(Wire::Anthropic, vec![thinking_call, text("done")], extra).await;
    let c = &s.engine.client;
    prompt(c, &s.session, "plan it", "queue").await;
    let (events, _) = until(c, &s.sub, closed("completed")).await;
    let reasoning = of_type(&events, "reasoning.completed");
    assert_eq!(reasoning[0]["data"]["text"], "I should plan first.");
    assert_eq!(reasoning[0]["data"]["signature"], "c2ln");
    let requests = s.mock.requests();
    assert_eq!(requests.len(), 2);
    let assistant = requests[1].body["messages"].as_array().unwrap().iter().find(|m| m["role"] == "assistant").unwrap();
    let blocks = assistant["content"].as_array().unwrap();
    assert_eq!(blocks[0], json!({ "type": "thinking", "thinking": "I should plan first.", "signature": "c2ln" }));
    assert!(blocks.iter().any(|b| b["type"] == "tool_use"));
}

#[tokio::test]
async fn a_users_shell_command_is_recorded_and_reaches_the_model_in_the_next_turn() {
    let deny_rm = json!({ "permissions": [{ "action": "bash", "pattern": "rm *", "effect": "deny" }] });
    let s = setup(Wire::Chat, vec![text("I see it")], deny_rm).await;
    let c = &s.engine.client;
    let ran = c
        .ok("session/shell", json!({ "sessionId": s.session, "command": "echo from-the-shell; echo oops >&2; exit 3" }))
        .await;
    assert_eq!(ran["exitCode"], 3, "{ran}");
    let output = ran["output"].as_str().unwrap();
    assert!(output.contains("from-the-shell") && output.contains("oops"), "{output}");
    let (events, _) = until(c, &s.sub, |e| e["type"] == "shell.completed").await;
    let started = of_type(&events, "shell.started");
    assert_eq!(started[0]["data"]["command"], "echo from-the-shell; echo oops >&2; exit 3");
    assert_eq!(events.last().unwrap()["seq"], ran["seq"]);
    assert_eq!(events.last().unwrap()["data"]["shellId"], ran["shellId"]);

    for (command, refusal) in [("rm -rf build", "refused by the permission rules: bash rm"), ("  ", "empty")] {
        let e = c.err("session/shell", json!({ "sessionId": s.session, "command": command })).await;
        assert_eq!(e.code, -32602, "{e:?}");
        assert!(e.message.contains(refusal), "{}", e.message);
    }
    let e = c.err("session/shell", json!({ "sessionId": "nope", "command": "true" })).await;
    assert_eq!(e.code, -32010, "{e:?}");

    prompt(c, &s.session, "what did I just run?", "queue").await;
    until(c, &s.sub, closed("completed")).await;
    let requests = s.mock.requests();
    assert_eq!(requests.len(), 1);
    let users = user_texts(Wire::Chat, &requests[0].body);
    assert!(users[0].contains("$ echo from-the-shell") && users[0].contains("from-the-shell\noops"), "{users:?}");
    assert_eq!(users.last().unwrap(), "what did I just run?");
}

/// What one prompt did against an OpenAI-compatible server speaking `dialect`.
struct Run {
    dialect: Dialect,
    events: Vec<Value>,
    deltas: Vec<Value>,
    requests: Vec<common::mock::Recorded>,
}

impl Run {
    fn closed(&self) -> &Value {
        &of_type(&self.events, "activity.closed")[0]["data"]
    }

    fn usage(&self) -> &Value {
        &of_type(&self.events, "turn.completed")[0]["data"]["usage"]
    }
}

/// What a dialect's run must show.
type Expect = fn(&Run);

/// Plays `turns` to one prompt through a server speaking `dialect`, until the activity closes.
async fn check(dialect: Dialect, turns: Vec<ScriptTurn>) -> Run {
    let s = setup(Wire::Chat, turns, json!({})).await;
    s.mock.dialect(dialect);
    let c = &s.engine.client;
    prompt(c, &s.session, "go", "queue").await;
    let (events, deltas) = until(c, &s.sub, |e| e["type"] == "activity.closed").await;
    Run { dialect, events, deltas, requests: s.mock.requests() }
}

fn two_todos() -> ScriptTurn {
    let todo = |content: &str| ScriptToolCall {
        id: None,
        name: "todowrite".into(),
        input: json!({ "todos": [{ "content": content, "status": "pending" }] }),
    };
    ScriptTurn { tool_calls: vec![todo("first"), todo("second")], ..Default::default() }
}

#[tokio::test]
async fn openai_compatible_dialects_are_understood() {
    let thinking = ScriptTurn { reasoning: Some("let me think it over".into()), ..text("the answer") };
    let rejected = ScriptTurn {
        error: Some(ScriptError { status: 400, message: "field 'foo' is not allowed here".into(), retry_after: None }),
        ..Default::default()
    };
    let cases: Vec<(Dialect, Vec<ScriptTurn>, Expect)> = vec![
        (Dialect::NoCallIds, vec![two_todos(), text("done")], |run| {
            assert_eq!(run.closed()["reason"], "completed", "{:?}", run.dialect);
            let called = of_type(&run.events, "tool.called");
            assert_eq!(called.len(), 2);
            let ids: Vec<&str> = called.iter().map(|e| e["data"]["callId"].as_str().unwrap()).collect();
            assert_ne!(ids[0], ids[1]);
            // Each call's streamed input is its own, under its own id, and adds up to its input.
            for call in &called {
                let id = call["data"]["callId"].as_str().unwrap();
                let streamed: String = run
                    .deltas
                    .iter()
                    .filter(|d| d["kind"] == "tool_input" && d["partId"] == id)
                    .map(|d| d["delta"].as_str().unwrap())
                    .collect();
                assert_eq!(serde_json::from_str::<Value>(&streamed).unwrap(), call["data"]["input"], "{id}");
            }
            let input_parts: std::collections::HashSet<&str> = run
                .deltas
                .iter()
                .filter(|d| d["kind"] == "tool_input")
                .map(|d| d["partId"].as_str().unwrap())
                .collect();
            assert_eq!(input_parts, ids.iter().copied().collect());
            // The provider gets each result under an id of its own.
            let (results, calls) = replayed_call_ids(Wire::Chat, &run.requests[1].body);
            assert_eq!(results, ["call_0", "call_1"]);
            assert_eq!(calls, ["call_0", "call_1"]);
        }),
        (Dialect::ReasoningKey, vec![thinking], |run| {
            let reasoning = of_type(&run.events, "reasoning.completed");
            assert_eq!(reasoning[0]["data"]["text"], "let me think it over", "{:?}", run.dialect);
            assert_eq!(of_type(&run.events, "text.completed")[0]["data"]["text"], "the answer");
        }),
        (Dialect::UsageInLastChunk, vec![text("hello")], |run| {
            assert_eq!(run.usage()["inputTokens"], 100, "{:?}: {}", run.dialect, run.usage());
            assert_eq!(run.usage()["outputTokens"], 20);
            assert!(run.usage().get("estimated").is_none());
        }),
        (Dialect::PlainTextErrors, vec![rejected], |run| {
            assert_eq!(run.closed()["reason"], "failed", "{:?}", run.dialect);
            let error = run.closed()["error"].as_str().unwrap();
            assert!(error.contains("field 'foo' is not allowed here"), "{error}");
            assert_eq!(run.requests.len(), 1, "a 400 is not retried");
            assert!(of_type(&run.events, "retry.scheduled").is_empty());
        }),
        (Dialect::SplitNames, vec![tool_call("todowrite", todo_input()), text("done")], |run| {
            let called = of_type(&run.events, "tool.called");
            assert_eq!(called[0]["data"]["tool"], "todowrite", "{:?}", run.dialect);
            assert_eq!(of_type(&run.events, "tool.completed").len(), 1);
            assert_eq!(run.closed()["reason"], "completed");
        }),
        // llama.cpp reports no usage: keel estimates it from the sizes, and says so.
        (Dialect::LlamaCpp, vec![text("hello there, how are you")], |run| {
            let usage = run.usage();
            assert_eq!(usage["estimated"], true, "{:?}: {usage}", run.dialect);
            assert!(usage["inputTokens"].as_u64().unwrap() > 0, "{usage}");
            assert!(usage["outputTokens"].as_u64().unwrap() > 0, "{usage}");
        }),
        (Dialect::OpenAi, vec![text("hello")], |run| {
            assert_eq!(run.usage()["inputTokens"], 100);
            assert!(run.usage().get("estimated").is_none(), "{}", run.usage());
        }),
    ];
    for (dialect, turns, expect) in cases {
        expect(&check(dialect, turns).await);
    }
}

#[tokio::test]
async fn a_providers_body_override_reaches_every_request() {
    let body = json!({ "tool_choice": "required", "stream_options": null, "extra": { "top_k": 20 } });
    let extra = json!({ "providers": { "mock": { "body": body } } });
    let s = setup(Wire::Chat, vec![text("hi")], extra).await;
    let c = &s.engine.client;
    prompt(c, &s.session, "hello", "queue").await;
    c.events_until(&s.sub, |e| e["type"] == "activity.closed").await;
    let sent = &s.mock.requests()[0].body;
    assert_eq!(sent["tool_choice"], "required");
    assert!(sent.get("stream_options").is_none(), "{sent}");
    assert_eq!(sent["extra"], json!({ "top_k": 20 }));
    assert_eq!(sent["stream"], true, "what keel sends stays unless overridden");
}
