//! `keel acp` driven from outside by the official ACP TypeScript SDK (tests/acp/client.mjs): initialize, a session, a
//! prompt whose write asks for permission, then a restarted process that loads the session and replays it. The seqs
//! the ACP updates carry are checked against the native event log through `keel serve`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::mock::MockModel;
use common::{Engine, Home};
use keel::provider::scripted::{ScriptToolCall, ScriptTurn};
use serde_json::{Value, json};

const PROMPT: &str = "Write hello.txt then say done";
/// The id the mock model gives the write; clients see keel's own id for the call instead.
const PROVIDER_CALL_ID: &str = "call_write_hello";
const REASONING: &str = "The user wants hello.txt; the write tool does that.";
const TEXT: &str = "Writing hello.txt now.\n";
const DONE: &str = "done";

fn acp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/acp")
}

/// `node` must be on PATH; the SDK is installed from the lock file when node_modules is missing.
async fn ensure_sdk() {
    match tokio::process::Command::new("node").arg("--version").output().await {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("`node --version` failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!("the ACP client test needs Node.js (v20 or later) on PATH: cannot run `node` ({e})"),
    }
    if !acp_dir().join("node_modules/@agentclientprotocol/sdk").exists() {
        let out = tokio::process::Command::new("npm")
            .arg("ci")
            .current_dir(acp_dir())
            .output()
            .await
            .expect("node_modules is missing in tests/acp and `npm` cannot run");
        assert!(out.status.success(), "npm ci in tests/acp failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Runs tests/acp/client.mjs against the built binary and returns its JSON report.
async fn run_client(home: &Home, ws: &str) -> Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(acp_dir().join("client.mjs"))
        .env("KEEL_BIN", env!("CARGO_BIN_EXE_keel"))
        .env("KEEL_HOME", home.path())
        .env("WORKSPACE", ws)
        .env("KEEL_LOG", "warn")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // The script has its own 20 s limit; this one only catches a script that hangs anyway.
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output()).await.expect("client.mjs hung").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client.mjs failed ({}):\n{stderr}\nstdout: {stdout}", out.status);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("client.mjs printed no JSON ({e}): {stdout}"))
}

fn kind(u: &Value) -> &str {
    u["update"]["sessionUpdate"].as_str().unwrap_or_default()
}

/// The seq of the event an update shows. Chunks streamed before their event commits have none; they carry the
/// seq they follow (`afterSeq`) instead.
fn seq(u: &Value) -> Option<u64> {
    let meta = &u["update"]["_meta"]["keel"];
    assert!(meta["seq"].is_u64() || meta["afterSeq"].is_u64(), "no _meta.keel.seq or afterSeq in {u}");
    meta["seq"].as_u64()
}

/// The concatenated text of one kind of chunk.
fn chunks(updates: &[Value], which: &str) -> String {
    updates
        .iter()
        .filter(|u| kind(u) == which)
        .map(|u| {
            assert_eq!(u["update"]["content"]["type"], "text", "{u}");
            u["update"]["content"]["text"].as_str().unwrap()
        })
        .collect()
}

/// The `tool_call` and `tool_call_update`s of one call, in order.
fn call_updates<'a>(updates: &'a [Value], id: &str) -> Vec<&'a Value> {
    updates
        .iter()
        .filter(|u| matches!(kind(u), "tool_call" | "tool_call_update") && u["update"]["toolCallId"] == id)
        .collect()
}

/// The last status a call's updates set.
fn final_status(updates: &[&Value]) -> Option<String> {
    updates.iter().filter_map(|u| u["update"]["status"].as_str()).next_back().map(str::to_owned)
}

/// Every seq in the session's native log, paged through `session/events`.
async fn native_seqs(home: &Home, session: &str) -> (BTreeSet<u64>, HashMap<u64, String>) {
    let engine = Engine::ready(home.path()).await;
    let mut seqs = BTreeSet::new();
    let mut types = HashMap::new();
    let mut after = 0;
    loop {
        let page =
            engine.client.ok("session/events", json!({ "sessionId": session, "afterSeq": after, "limit": 100 })).await;
        for e in page["events"].as_array().unwrap() {
            let s = e["seq"].as_u64().unwrap();
            seqs.insert(s);
            types.insert(s, e["type"].as_str().unwrap().to_owned());
            after = s;
        }
        if page["hasMore"] != true {
            break;
        }
    }
    (seqs, types)
}

fn write_input() -> Value {
    json!({ "filePath": "hello.txt", "content": "hi\n" })
}

struct Scenario {
    home: Home,
    ws: String,
    mock: MockModel,
    /// client.mjs's report.
    r: Value,
}

/// The mock plays two turns (reasoning, text and a write of hello.txt; then "done"), `chunk_delay_ms` apart per
/// streamed chunk, and client.mjs runs its prompt and its reload against it.
async fn scenario(chunk_delay_ms: u64) -> Scenario {
    ensure_sdk().await;
    let home = Home::new();
    let ws = home.workspace();
    let mock = MockModel::start().await;
    mock.push(ScriptTurn {
        reasoning: Some(REASONING.into()),
        text: Some(TEXT.into()),
        tool_calls: vec![ScriptToolCall {
            id: Some(PROVIDER_CALL_ID.into()),
            name: "write".into(),
            input: write_input(),
        }],
        chunk_delay_ms,
        ..Default::default()
    });
    mock.push(ScriptTurn { text: Some(DONE.into()), chunk_delay_ms, ..Default::default() });
    let config =
        json!({ "model": "mock/m", "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url() } } });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let r = run_client(&home, &ws).await;
    Scenario { home, ws, mock, r }
}

#[tokio::test]
async fn the_official_sdk_prompts_approves_and_reloads_a_session_after_a_restart() {
    let Scenario { home, ws, mock, r } = scenario(0).await;
    let input = write_input();
    let report = serde_json::to_string_pretty(&r).unwrap();

    // What the SDK saw is what keel sent: nothing failed its schema, nothing was dropped or stripped.
    assert_eq!(r["sdkErrors"], json!([]), "{report}");
    assert_eq!(r["schemaDiffs"], json!([]), "{report}");
    assert_eq!(r["unexpectedRequests"], json!([]), "{report}");
    assert_eq!(r["updatesAfterStop"], 0, "every update comes before the prompt's answer: {report}");
    for exit in r["exits"].as_array().unwrap() {
        assert_eq!(exit["exitedOnEof"], true, "keel acp exits when stdin closes: {report}");
        assert_eq!(exit["code"], 0, "{report}");
    }

    // initialize and session/new.
    assert_eq!(r["initialize"]["protocolVersion"], 1, "{report}");
    assert_eq!(r["initialize"]["agentCapabilities"]["loadSession"], true, "{report}");
    assert_eq!(r["initialize"]["agentInfo"]["name"], "keel");
    let session = r["sessionId"].as_str().unwrap().to_owned();
    let options: Vec<_> =
        r["newSession"]["configOptions"].as_array().unwrap().iter().map(|o| o["id"].clone()).collect();
    assert!(options.contains(&json!("model")) && options.contains(&json!("mode")), "{options:?}");

    // The prompt.
    assert_eq!(r["stopReason"], "end_turn", "{report}");
    let updates = r["updates"].as_array().unwrap().clone();
    assert!(updates.iter().all(|u| u["sessionId"] == session.as_str()), "{report}");

    // One permission request, for the write, with the four options (optionId = kind).
    let asked = r["permissionRequests"].as_array().unwrap();
    assert_eq!(asked.len(), 1, "{report}");
    assert_eq!(asked[0]["sessionId"], session.as_str());
    let call_id = asked[0]["toolCall"]["toolCallId"].as_str().unwrap().to_owned();
    assert!(call_id.starts_with("call_") && call_id != PROVIDER_CALL_ID, "keel names the call: {report}");
    let kinds: Vec<_> = asked[0]["options"].as_array().unwrap().iter().map(|o| o["kind"].clone()).collect();
    assert_eq!(kinds, [json!("allow_once"), json!("allow_always"), json!("reject_once"), json!("reject_always")]);
    for o in asked[0]["options"].as_array().unwrap() {
        assert_eq!(o["optionId"], o["kind"], "{o}");
    }

    // The call: tool_call (pending, the raw input), in_progress, then completed with a diff for hello.txt.
    let call = call_updates(&updates, &call_id);
    assert!(call.len() >= 2, "{report}");
    assert_eq!(kind(call[0]), "tool_call", "the first update of the call is the tool_call: {report}");
    assert_eq!(call[0]["update"]["status"], "pending");
    assert_eq!(call[0]["update"]["kind"], "edit");
    assert_eq!(call[0]["update"]["rawInput"], input);
    assert!(call[0]["update"]["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(call[1..].iter().all(|u| kind(u) == "tool_call_update"), "{report}");
    let statuses: Vec<_> = call[1..].iter().filter_map(|u| u["update"]["status"].as_str()).collect();
    assert_eq!(statuses, ["in_progress", "completed"], "{report}");
    let completed = call.last().unwrap();
    assert_eq!(completed["update"]["status"], "completed");
    assert!(completed["update"].get("rawOutput").is_some(), "{completed}");
    let hello = Path::new(&ws).join("hello.txt");
    let diff = completed["update"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "diff")
        .unwrap_or_else(|| panic!("no diff item in {completed}"));
    assert_eq!(diff["path"], hello.to_str().unwrap(), "ACP paths are absolute: {diff}");
    assert_eq!(diff["newText"], "hi\n");
    assert!(diff["oldText"].is_null(), "a new file: {diff}");
    assert_eq!(std::fs::read_to_string(&hello).unwrap(), "hi\n");

    // The text and the reasoning, whole.
    assert_eq!(chunks(&updates, "agent_message_chunk"), format!("{TEXT}{DONE}"), "{report}");
    assert_eq!(chunks(&updates, "agent_thought_chunk"), REASONING, "{report}");
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    let replayed_call = &requests[1].body["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(replayed_call["tool_call_id"], PROVIDER_CALL_ID, "the model gets its own id back");

    // Every durable update carries keel's seq, in log order (one event may become several updates).
    let seqs: Vec<u64> = updates.iter().filter_map(seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "seqs out of order: {seqs:?}\n{report}");

    // After a restart, session/load replays the prompt, the text and the call with its final status.
    // The commands announced after the load are news, not part of the replay.
    let loaded: Vec<Value> = r["loadedUpdates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["update"]["sessionUpdate"] != "available_commands_update")
        .cloned()
        .collect();
    assert!(loaded.iter().all(|u| u["sessionId"] == session.as_str()), "{report}");
    assert_eq!(chunks(&loaded, "user_message_chunk"), PROMPT, "{report}");
    assert_eq!(chunks(&loaded, "agent_message_chunk"), format!("{TEXT}{DONE}"), "{report}");
    let replayed = call_updates(&loaded, &call_id);
    assert_eq!(replayed.first().map(|u| kind(u)), Some("tool_call"), "{report}");
    assert_eq!(final_status(&replayed).as_deref(), Some("completed"), "{report}");
    let loaded_seqs: Vec<u64> = loaded.iter().filter_map(seq).collect();
    assert_eq!(loaded_seqs.len(), loaded.len(), "a replay is made of durable events only");

    // The seqs are the native log's: `keel serve` on the same home knows every one of them.
    let (native, types) = native_seqs(&home, &session).await;
    for s in seqs.iter().chain(&loaded_seqs) {
        assert!(native.contains(s), "seq {s} is not in the native log {native:?}");
    }
    let call_seq = seq(call[0]).unwrap();
    assert_eq!(types[&call_seq], "tool.called", "{types:?}");
}

/// With a model that streams slowly, text and reasoning reach the client as many chunks (from live deltas) before
/// their parts complete. They must still add up to the whole text, once, and carry seqs that exist in the native log
/// (streamed chunks carry the seq they follow).
#[tokio::test]
async fn streamed_chunks_add_up_and_carry_increasing_seqs() {
    let Scenario { home, r, .. } = scenario(30).await;
    let report = serde_json::to_string_pretty(&r).unwrap();
    assert_eq!(r["schemaDiffs"], json!([]), "{report}");
    assert_eq!(r["stopReason"], "end_turn", "{report}");
    let updates = r["updates"].as_array().unwrap().clone();
    let thoughts = updates.iter().filter(|u| kind(u) == "agent_thought_chunk").count();
    assert!(thoughts > 1, "the reasoning was streamed in pieces: {report}");
    assert_eq!(chunks(&updates, "agent_thought_chunk"), REASONING, "{report}");
    assert_eq!(chunks(&updates, "agent_message_chunk"), format!("{TEXT}{DONE}"), "{report}");
    let seqs: Vec<u64> = updates.iter().filter_map(seq).collect();
    let (native, _) = native_seqs(&home, r["sessionId"].as_str().unwrap()).await;
    for s in &seqs {
        assert!(native.contains(s), "seq {s} is not in the native log {native:?}");
    }
    let described: Vec<String> = updates.iter().map(|u| format!("{}@{:?}", kind(u), seq(u))).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "seqs out of order: {described:?}");
    // Streamed chunks say which committed event they follow: one before the next durable update.
    let mut next = u64::MAX;
    for u in updates.iter().rev() {
        match seq(u) {
            Some(s) => next = s,
            None => assert!(u["update"]["_meta"]["keel"]["afterSeq"].as_u64().unwrap() < next, "{described:?}"),
        }
    }
}
