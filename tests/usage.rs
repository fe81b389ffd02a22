//! Usage, cost and titles against the mock model: the `session/usage` notification and `session/get` adding up to
//! what the mock reported and the catalog's prices on every wire, a summary's cost counted, titles from the first
//! prompt (its words, or the small model's answer) that never replace a title a person set, and the figures
//! `keel run` prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mock::{MockModel, Wire};
use common::{Client, Engine, Framing, Home};
use keel::provider::scripted::{ScriptToolCall, ScriptTurn, ScriptUsage};
use serde_json::{Value, json};

/// Dollars per million tokens.
const INPUT_PRICE: f64 = 3.0;
const OUTPUT_PRICE: f64 = 15.0;
const WINDOW: u64 = 10_000;

fn used(input: u64, output: u64) -> Option<ScriptUsage> {
    Some(ScriptUsage { input, output, ..Default::default() })
}

fn answer(text: &str, input: u64, output: u64) -> ScriptTurn {
    ScriptTurn { text: Some(text.into()), usage: used(input, output), ..Default::default() }
}

fn reading(path: &str, input: u64, output: u64) -> ScriptTurn {
    ScriptTurn {
        tool_calls: vec![ScriptToolCall { id: None, name: "read".into(), input: json!({ "filePath": path }) }],
        usage: used(input, output),
        ..Default::default()
    }
}

fn provider(wire: Wire, mock: &MockModel) -> Value {
    json!({
        "wire": wire.config_name(), "baseUrl": mock.url(), "apiKey": "sk-test",
        "models": { "test-model": { "contextWindow": WINDOW, "maxOutputTokens": 500,
            "cost": { "input": INPUT_PRICE, "output": OUTPUT_PRICE, "cacheRead": 0.0, "cacheWrite": 0.0 } } }
    })
}

async fn start(home: &Home, config: Value) -> Engine {
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let engine = Engine::start(home.path(), Framing::Ndjson).await;
    engine.client.initialize().await;
    engine
}

async fn prompt(c: &Client, session: &str, text: &str) {
    c.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": text }] })).await;
}

/// Messages until the activity closes and `notices` usage notifications of the session have arrived (they travel
/// apart from the event stream, so the last may come after the close).
async fn until_closed(c: &Client, sub: &str, session: &str, notices: usize) -> (Vec<Value>, Vec<Value>) {
    let (mut events, mut usage) = (Vec::new(), Vec::new());
    let closed = |events: &[Value]| events.iter().any(|e: &Value| e["type"] == "activity.closed");
    while !closed(&events) || usage.len() < notices {
        let m = c.next_message().await;
        if m["method"] == "session/event" && m["params"]["subscriptionId"] == sub {
            events.push(m["params"]["event"].clone());
        } else if m["method"] == "session/usage" && m["params"]["sessionId"] == session {
            usage.push(m["params"].clone());
        }
    }
    (events, usage)
}

fn cost(input: u64, output: u64) -> f64 {
    (input as f64 * INPUT_PRICE + output as f64 * OUTPUT_PRICE) / 1_000_000.0
}

fn near(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-12
}

#[tokio::test]
async fn the_usage_notification_adds_up_to_the_reported_usage_and_the_catalog_prices_on_every_wire() {
    for wire in [Wire::Chat, Wire::Responses, Wire::Anthropic] {
        let home = Home::new();
        let mock = MockModel::start().await;
        std::fs::write(format!("{}/notes.txt", home.workspace()), "some notes\n").unwrap();
        mock.push(reading("notes.txt", 1_000, 40));
        mock.push(answer("They are notes.", 1_200, 60));
        let config = json!({ "model": "mock/test-model", "providers": { "mock": provider(wire, &mock) } });
        let engine = start(&home, config).await;
        let c = &engine.client;
        let session = c.create_session(&home.workspace()).await;
        let sub = c.subscribe(&session, 0).await;
        prompt(c, &session, "what is in notes.txt?").await;
        let (events, notices) = until_closed(c, &sub, &session, 2).await;
        assert_eq!(events.iter().filter(|e| e["type"] == "turn.completed").count(), 2, "{wire:?}");

        // One notice per turn, each with the totals so far.
        let first = &notices[0];
        assert_eq!(first["usage"]["inputTokens"], 1_000, "{wire:?}: {first}");
        assert_eq!(first["usage"]["outputTokens"], 40, "{wire:?}");
        assert!(near(&first["usage"]["costUsd"], cost(1_000, 40)), "{wire:?}: {first}");
        let last = &notices[1];
        assert_eq!(last["usage"]["inputTokens"], 2_200, "{wire:?}: {last}");
        assert_eq!(last["usage"]["outputTokens"], 100, "{wire:?}");
        assert!(near(&last["usage"]["costUsd"], cost(2_200, 100)), "{wire:?}: {last}");
        // The context: the last reported prompt plus what the answer added, against the declared window.
        let context = &last["context"];
        assert_eq!(context["window"], WINDOW, "{wire:?}");
        let tokens = context["tokens"].as_u64().unwrap();
        assert!((1_200..1_300).contains(&tokens), "{wire:?}: {context}");
        assert!(near(&context["share"], tokens as f64 / WINDOW as f64), "{wire:?}: {context}");
        assert!(context["compactAt"].as_u64().unwrap() < WINDOW, "{wire:?}: {context}");

        // session/get says the same.
        let got = c.ok("session/get", json!({ "sessionId": session })).await;
        assert_eq!(got["context"], *context, "{wire:?}");
        assert_eq!(got["session"]["usage"], last["usage"], "{wire:?}");
    }
}

#[tokio::test]
async fn a_summary_is_counted_in_the_session_cost() {
    let home = Home::new();
    let mock = MockModel::start().await;
    mock.push(answer("first answer", 500, 20));
    mock.push(answer("## Goal\nanswer questions", 700, 30));
    let config = json!({ "model": "mock/test-model", "providers": { "mock": provider(Wire::Chat, &mock) } });
    let engine = start(&home, config).await;
    let c = &engine.client;
    let session = c.create_session(&home.workspace()).await;
    let sub = c.subscribe(&session, 0).await;
    prompt(c, &session, "a question").await;
    until_closed(c, &sub, &session, 1).await;
    // A manual compaction summarises: the summary request's usage joins the totals.
    c.ok("session/compact", json!({ "sessionId": session })).await;
    let (events, notices) = until_closed(c, &sub, &session, 1).await;
    let completed = events.iter().find(|e| e["type"] == "compaction.completed").unwrap();
    assert_eq!(completed["data"]["usage"]["inputTokens"], 700, "{completed}");
    let usage = &notices[0]["usage"];
    assert_eq!(usage["inputTokens"], 1_200, "{usage}");
    assert!(near(&usage["costUsd"], cost(1_200, 50)), "{usage}");
    assert_eq!(notices[0]["context"]["tokens"], completed["data"]["tokensAfter"]);
}

#[tokio::test]
async fn the_first_prompt_names_the_session_and_a_set_title_is_kept() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let config = json!({ "model": "mock/test-model", "providers": { "mock": provider(Wire::Chat, &mock) } });
    let engine = start(&home, config).await;
    let c = &engine.client;

    // Without a small model: the prompt's own first words.
    mock.push(answer("done", 100, 5));
    mock.push(answer("done again", 100, 5));
    let session = c.create_session(&home.workspace()).await;
    let sub = c.subscribe(&session, 0).await;
    prompt(c, &session, "  Fix the flaky login test\nIt fails one run in ten.").await;
    let (events, _) = until_closed(c, &sub, &session, 1).await;
    let updated: Vec<_> = events.iter().filter(|e| e["type"] == "session.updated").collect();
    assert_eq!(updated.len(), 1, "{events:?}");
    assert_eq!(updated[0]["data"]["title"], "Fix the flaky login test");
    // Only the first prompt names it.
    prompt(c, &session, "and now something else").await;
    let (events, _) = until_closed(c, &sub, &session, 1).await;
    assert!(events.iter().all(|e| e["type"] != "session.updated"), "{events:?}");

    // A title given at creation is never replaced.
    mock.push(answer("ok", 100, 5));
    let named = c.ok("session/create", json!({ "cwd": home.workspace(), "title": "Mine" })).await;
    let named = named["session"]["id"].as_str().unwrap().to_owned();
    let named_sub = c.subscribe(&named, 0).await;
    prompt(c, &named, "do a thing").await;
    let (events, _) = until_closed(c, &named_sub, &named, 1).await;
    assert!(events.iter().all(|e| e["type"] != "session.updated"), "{events:?}");

    let list = c.ok("session/list", json!({})).await;
    let titles: Vec<_> = list["sessions"].as_array().unwrap().iter().map(|s| s["title"].clone()).collect();
    assert_eq!(titles, [json!("Mine"), json!("Fix the flaky login test")]);
}

#[tokio::test]
async fn the_small_model_writes_the_title() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let small = MockModel::start().await;
    small.push(answer("\"Flaky login test.\"", 80, 6));
    mock.push(answer("done", 100, 5));
    let config = json!({
        "model": "mock/test-model",
        "smallModel": "small/test-model",
        "providers": { "mock": provider(Wire::Chat, &mock), "small": provider(Wire::Anthropic, &small) }
    });
    let engine = start(&home, config).await;
    let c = &engine.client;
    let session = c.create_session(&home.workspace()).await;
    let sub = c.subscribe(&session, 0).await;
    prompt(c, &session, "The login test fails one run in ten; find out why").await;
    let (events, _) = until_closed(c, &sub, &session, 1).await;
    // Part of the activity: recorded before it closes.
    let updated = events.iter().position(|e| e["type"] == "session.updated").expect("a title");
    assert!(updated < events.iter().position(|e| e["type"] == "activity.closed").unwrap());
    assert_eq!(events[updated]["data"]["title"], "Flaky login test");
    let requests = small.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].body.to_string().contains("fails one run in ten"), "{}", requests[0].body);
    let got = c.ok("session/get", json!({ "sessionId": session })).await;
    assert_eq!(got["session"]["title"], "Flaky login test");
}
