//! `keel acp` on the wire, with a plain JSON-RPC client: config options, steering, cancel, plans, session lists and
//! bad input. (tests/acp.rs drives the happy path with the official TypeScript SDK.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;

use common::mock::MockModel;
use common::{Client, Framing, Home};
use keel::provider::scripted::{ScriptToolCall, ScriptTurn, ScriptUsage};
use serde_json::{Value, json};

async fn acp(home: &Home, mock: &MockModel) -> (tokio::process::Child, Client) {
    let config =
        json!({ "model": "mock/m", "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url() } } });
    acp_with(home, config).await
}

async fn acp_with(home: &Home, config: Value) -> (tokio::process::Child, Client) {
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let mut child = common::keel_command(home.path())
        .arg("acp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let client = Client::connect(child.stdout.take().unwrap(), child.stdin.take().unwrap(), Framing::Ndjson);
    let init = client.ok("initialize", json!({ "protocolVersion": 1, "clientCapabilities": {} })).await;
    assert_eq!(init["protocolVersion"], 1);
    (child, client)
}

/// Updates until the prompt request answers; returns (answer, updates).
async fn finish(c: &Client, answer: tokio::sync::oneshot::Receiver<Value>) -> (Value, Vec<Value>) {
    let mut updates = Vec::new();
    tokio::pin!(answer);
    loop {
        // Messages first: updates the engine wrote before its answer must not be left for the next prompt to read.
        tokio::select! {
            biased;
            m = c.next_message() => {
                if m["method"] == "session/update" {
                    updates.push(m["params"]["update"].clone());
                } else if m["method"] == "session/request_permission" {
                    c.respond(&m["id"], json!({ "outcome": { "outcome": "selected", "optionId": "allow_once" } }));
                }
            }
            a = &mut answer => return (a.unwrap(), updates),
        }
    }
}

#[tokio::test]
async fn config_options_plans_steering_cancel_and_lists() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let (_child, c) = acp(&home, &mock).await;
    let ws = home.workspace();
    let new = c.ok("session/new", json!({ "cwd": ws, "mcpServers": [] })).await;
    let session = new["sessionId"].as_str().unwrap().to_owned();
    let options = new["configOptions"].as_array().unwrap();
    assert_eq!(options[0]["id"], "model");
    assert_eq!(options[0]["currentValue"], "mock/m");

    let set = c
        .ok(
            "session/set_config_option",
            json!({ "sessionId": session, "configId": "model", "value": "scripted/default" }),
        )
        .await;
    assert_eq!(set["configOptions"][0]["currentValue"], "scripted/default");
    let bad = c
        .err("session/set_config_option", json!({ "sessionId": session, "configId": "model", "value": "nowhere/x" }))
        .await;
    assert_eq!(bad.code, -32602);
    c.ok("session/set_config_option", json!({ "sessionId": session, "configId": "model", "value": "mock/m" })).await;

    // A plan from todowrite, then a steer while the second turn streams slowly.
    mock.push(ScriptTurn {
        tool_calls: vec![ScriptToolCall {
            id: Some("p1".into()),
            name: "todowrite".into(),
            input: json!({ "todos": [{ "content": "step one", "status": "in_progress" }] }),
        }],
        ..Default::default()
    });
    mock.push(ScriptTurn {
        text: Some("one two three four five six ".repeat(5)),
        chunk_delay_ms: 50,
        ..Default::default()
    });
    mock.push(ScriptTurn { text: Some("steered".into()), ..Default::default() });
    let (_, answer) = c.start_request(
        "session/prompt",
        json!({ "sessionId": session, "prompt": [{ "type": "text", "text": "plan" }] }),
    );
    loop {
        let m = c.next_message().await;
        if m["params"]["update"]["sessionUpdate"] == "plan" {
            assert_eq!(m["params"]["update"]["entries"][0]["content"], "step one");
            assert_eq!(m["params"]["update"]["entries"][0]["status"], "in_progress");
            break;
        }
    }
    // Steer once the second turn streams (for about 1.5 s), so it lands at that turn's end.
    loop {
        let m = c.next_message().await;
        if m["params"]["update"]["sessionUpdate"] == "agent_message_chunk" {
            break;
        }
    }
    let steer =
        c.ok("_keel/steer", json!({ "sessionId": session, "prompt": [{ "type": "text", "text": "also this" }] })).await;
    assert!(steer["inputId"].is_string());
    let (answer, _) = finish(&c, answer).await;
    assert_eq!(answer["result"]["stopReason"], "end_turn", "{answer}");
    let steered = mock.requests()[2].body.to_string();
    assert!(steered.contains("also this"), "the steer reached the next turn");

    // Cancel ends the prompt with `cancelled`.
    mock.push(ScriptTurn { text: Some("word ".repeat(300)), chunk_delay_ms: 10, ..Default::default() });
    let (_, answer) = c.start_request(
        "session/prompt",
        json!({ "sessionId": session, "prompt": [{ "type": "text", "text": "long" }] }),
    );
    loop {
        let m = c.next_message().await;
        if m["params"]["update"]["sessionUpdate"] == "agent_message_chunk" {
            break;
        }
    }
    c.notify("session/cancel", json!({ "sessionId": session }));
    let (answer, _) = finish(&c, answer).await;
    assert_eq!(answer["result"]["stopReason"], "cancelled", "{answer}");

    let list = c.ok("session/list", json!({ "cwd": ws })).await;
    assert_eq!(list["sessions"][0]["sessionId"], session.as_str());
    assert!(list["sessions"][0]["updatedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        c.err("session/load", json!({ "sessionId": "ses_nope", "cwd": ws, "mcpServers": [] })).await.code,
        -32002
    );
    assert_eq!(c.err("session/prompt", json!({ "sessionId": session, "prompt": [] })).await.code, -32602);
    c.ok("session/close", json!({ "sessionId": session })).await;
}

#[tokio::test]
async fn a_permission_request_withdrawn_by_cancel_is_announced_the_acp_way() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let (_child, c) = acp(&home, &mock).await;
    let ws = home.workspace();
    let session = c.ok("session/new", json!({ "cwd": ws, "mcpServers": [] })).await["sessionId"].clone();
    let write = ScriptToolCall {
        id: Some("c1".into()),
        name: "write".into(),
        input: json!({ "filePath": "a.txt", "content": "A" }),
    };
    mock.push(ScriptTurn { tool_calls: vec![write], ..Default::default() });
    let (_, answer) = c
        .start_request("session/prompt", json!({ "sessionId": session, "prompt": [{ "type": "text", "text": "go" }] }));
    let asked = loop {
        let m = c.next_message().await;
        if m["method"] == "session/request_permission" {
            break m;
        }
    };
    c.notify("session/cancel", json!({ "sessionId": session }));
    let withdrawn = loop {
        let m = c.next_message().await;
        if m["method"] == "$/cancel_request" || m["method"] == "$/cancelRequest" {
            break m;
        }
    };
    assert_eq!(withdrawn["method"], "$/cancel_request", "{withdrawn}");
    assert_eq!(withdrawn["params"]["requestId"], asked["id"]);
    let (answer, _) = finish(&c, answer).await;
    assert_eq!(answer["result"]["stopReason"], "cancelled", "{answer}");
}

#[tokio::test]
async fn calls_that_the_model_gave_one_id_are_distinct_calls_and_an_edit_is_asked_as_an_edit() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let (_child, c) = acp(&home, &mock).await;
    let ws = home.workspace();
    let session = c.ok("session/new", json!({ "cwd": ws, "mcpServers": [] })).await["sessionId"].clone();
    // Three turns, each with a call the server names `call_0`, as some OpenAI-compatible servers do.
    let calls = [
        ("write", json!({ "filePath": "a.txt", "content": "A" })),
        ("edit", json!({ "filePath": "a.txt", "oldString": "A", "newString": "B" })),
        ("read", json!({ "filePath": "a.txt" })),
    ];
    for (name, input) in calls {
        let call = ScriptToolCall { id: Some("call_0".into()), name: name.into(), input };
        mock.push(ScriptTurn { tool_calls: vec![call], ..Default::default() });
    }
    mock.push(ScriptTurn { text: Some("Done.".into()), ..Default::default() });
    let (_, answer) = c
        .start_request("session/prompt", json!({ "sessionId": session, "prompt": [{ "type": "text", "text": "go" }] }));
    let mut asked = Vec::new();
    let mut updates = Vec::new();
    tokio::pin!(answer);
    let answer = loop {
        tokio::select! {
            biased;
            m = c.next_message() => {
                if m["method"] == "session/update" {
                    updates.push(m["params"]["update"].clone());
                } else if m["method"] == "session/request_permission" {
                    c.respond(&m["id"], json!({ "outcome": { "outcome": "selected", "optionId": "allow_once" } }));
                    asked.push(m["params"]["toolCall"].clone());
                }
            }
            a = &mut answer => break a.unwrap(),
        }
    };
    assert_eq!(answer["result"]["stopReason"], "end_turn", "{answer}");
    let announced: Vec<&Value> = updates.iter().filter(|u| u["sessionUpdate"] == "tool_call").collect();
    let ids: Vec<&str> = announced.iter().map(|u| u["toolCallId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{updates:#?}");
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2], "{ids:?}");
    let titles: Vec<&str> = announced.iter().map(|u| u["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["write: a.txt", "edit: a.txt", "read: a.txt"]);
    for id in &ids {
        let statuses: Vec<&str> = updates
            .iter()
            .filter(|u| u["sessionUpdate"] == "tool_call_update" && u["toolCallId"] == *id)
            .filter_map(|u| u["status"].as_str())
            .collect();
        assert_eq!(statuses.last(), Some(&"completed"), "{id}: {updates:#?}");
    }
    // The write and the edit ask (the read does not); each question names its own call.
    assert_eq!(asked.len(), 2, "{asked:#?}");
    assert_eq!(asked[0]["toolCallId"], ids[0]);
    assert_eq!(asked[0]["title"], "write: a.txt");
    assert_eq!(asked[1]["toolCallId"], ids[1]);
    assert_eq!(asked[1]["title"], "edit: a.txt", "{}", asked[1]);
    assert_eq!(asked[1]["rawInput"]["newString"], "B");
    assert_eq!(std::fs::read_to_string(std::path::Path::new(&ws).join("a.txt")).unwrap(), "B");
}

#[tokio::test]
async fn an_answer_cut_at_the_output_limit_stops_with_max_tokens() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let (_child, c) = acp(&home, &mock).await;
    let session = c.ok("session/new", json!({ "cwd": home.workspace(), "mcpServers": [] })).await["sessionId"].clone();
    mock.push(ScriptTurn { text: Some("The answer is".into()), finish: Some("length".into()), ..Default::default() });
    let (_, answer) = c
        .start_request("session/prompt", json!({ "sessionId": session, "prompt": [{ "type": "text", "text": "go" }] }));
    let (answer, _) = finish(&c, answer).await;
    assert_eq!(answer["result"]["stopReason"], "max_tokens", "{answer}");
}

#[tokio::test]
async fn usage_updates_a_title_and_the_prompt_answers_usage() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let (_child, c) = acp(&home, &mock).await;
    let new = c.ok("session/new", json!({ "cwd": home.workspace(), "mcpServers": [] })).await;
    let session = new["sessionId"].as_str().unwrap().to_owned();
    let usage = |input, output| Some(ScriptUsage { input, output, ..Default::default() });
    mock.push(ScriptTurn {
        tool_calls: vec![ScriptToolCall {
            id: Some("p1".into()),
            name: "todowrite".into(),
            input: json!({ "todos": [{ "content": "look", "status": "in_progress" }] }),
        }],
        usage: usage(300, 20),
        ..Default::default()
    });
    mock.push(ScriptTurn { text: Some("looked".into()), usage: usage(400, 10), ..Default::default() });
    let (_, answer) = c.start_request(
        "session/prompt",
        json!({ "sessionId": session, "prompt": [{ "type": "text", "text": "Look around the repository" }] }),
    );
    let (answer, updates) = finish(&c, answer).await;
    let result = &answer["result"];
    assert_eq!(result["stopReason"], "end_turn", "{answer}");
    assert_eq!(result["usage"]["inputTokens"], 700, "{answer}");
    assert_eq!(result["usage"]["outputTokens"], 30, "{answer}");
    assert_eq!(result["usage"]["totalTokens"], 730, "{answer}");
    let of = |kind: &str| updates.iter().filter(|u| u["sessionUpdate"] == kind).cloned().collect::<Vec<_>>();
    let usage_updates = of("usage_update");
    assert_eq!(usage_updates.len(), 2, "{updates:?}");
    assert_eq!(usage_updates[1]["used"], 410);
    assert_eq!(usage_updates[1]["cost"]["currency"], "USD");
    let info = of("session_info_update");
    assert_eq!(info.len(), 1, "{updates:?}");
    assert_eq!(info[0]["title"], "Look around the repository");
    let list = c.ok("session/list", json!({})).await;
    assert_eq!(list["sessions"][0]["title"], "Look around the repository");
}

#[tokio::test]
async fn commands_and_skills_are_announced_and_a_slash_prompt_runs_its_command() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let (_child, c) = acp(&home, &mock).await;
    let ws = home.workspace();
    let write = |path: &str, text: &str| {
        let path = std::path::Path::new(&ws).join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(".keel/commands/explain.md", "---\ndescription: Explain a file\n---\nExplain $ARGUMENTS in two lines.");
    write(".claude/skills/release/SKILL.md", "---\ndescription: Cut a release\n---\nTag it.");
    let new = c.ok("session/new", json!({ "cwd": ws, "mcpServers": [] })).await;
    let session = new["sessionId"].as_str().unwrap().to_owned();
    let announced = loop {
        let m = c.next_message().await;
        if m["params"]["update"]["sessionUpdate"] == "available_commands_update" {
            break m;
        }
    };
    assert_eq!(announced["params"]["sessionId"], session.as_str());
    let commands = announced["params"]["update"]["availableCommands"].as_array().unwrap();
    let names: Vec<&str> = commands.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["compact", "explain", "init", "release", "review"]);
    let explain = commands.iter().find(|c| c["name"] == "explain").unwrap();
    assert_eq!(explain["description"], "Explain a file");
    assert!(explain["input"]["hint"].is_string());

    mock.push(ScriptTurn { text: Some("it parses".into()), ..Default::default() });
    let (_, answer) = c.start_request(
        "session/prompt",
        json!({ "sessionId": session, "prompt": [{ "type": "text", "text": "/explain src/lib.rs" }] }),
    );
    let (answer, _) = finish(&c, answer).await;
    assert_eq!(answer["result"]["stopReason"], "end_turn", "{answer}");
    let request = mock.requests()[0].body.to_string();
    assert!(request.contains("Explain src/lib.rs in two lines."), "{request}");

    // A load announces them too.
    c.ok("session/load", json!({ "sessionId": session, "cwd": ws, "mcpServers": [] })).await;
    let announced = loop {
        let m = c.next_message().await;
        if m["params"]["update"]["sessionUpdate"] == "available_commands_update" {
            break m;
        }
    };
    assert_eq!(announced["params"]["sessionId"], session.as_str());
    let commands = announced["params"]["update"]["availableCommands"].as_array().unwrap();
    let names: Vec<&str> = commands.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["compact", "explain", "init", "release", "review"]);
}

/// The model option's values, from a `session/new` or `session/set_config_option` answer.
fn model_values(answer: &Value) -> Vec<String> {
    let options = answer["configOptions"].as_array().unwrap();
    let model = options.iter().find(|o| o["id"] == "model").unwrap();
    model["options"].as_array().unwrap().iter().map(|o| o["value"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_model_option_offers_only_models_that_can_run() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let ws = home.workspace();

    // No key anywhere: the configured provider's model only; no built-in provider's, never the scripted player.
    let (child, c) = acp(&home, &mock).await;
    let new = c.ok("session/new", json!({ "cwd": ws, "mcpServers": [] })).await;
    let values = model_values(&new);
    assert!(values.contains(&"mock/m".to_owned()), "{values:?}");
    for value in &values {
        assert!(value.starts_with("mock/"), "{value} has no provider configured or no key: {values:?}");
    }
    drop(c);
    drop(child);

    // A key stored for openai: its models can run now and are offered.
    let mut auth =
        common::keel_command(home.path()).args(["auth", "set", "openai"]).stdin(Stdio::piped()).spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = auth.stdin.take().unwrap();
        stdin.write_all(b"sk-test-not-real").await.unwrap();
    }
    assert!(auth.wait().await.unwrap().success());
    let (_child, c) = acp(&home, &mock).await;
    let new = c.ok("session/new", json!({ "cwd": ws, "mcpServers": [] })).await;
    let values = model_values(&new);
    assert!(values.iter().any(|v| v.starts_with("openai/")), "{values:?}");
    assert!(!values.iter().any(|v| v.starts_with("anthropic/") || v.starts_with("scripted/")), "{values:?}");
    assert!(!new.to_string().contains("sk-test-not-real"));
}

#[tokio::test]
async fn agents_are_session_modes_and_set_mode_changes_the_next_prompts_agent() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let (_child, c) = acp(&home, &mock).await;
    let ws = home.workspace();
    let new = c.ok("session/new", json!({ "cwd": ws, "mcpServers": [] })).await;
    let session = new["sessionId"].as_str().unwrap().to_owned();
    assert_eq!(new["modes"]["currentModeId"], "build", "{new}");
    let modes: Vec<&str> =
        new["modes"]["availableModes"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(modes.contains(&"build") && modes.contains(&"plan"), "{modes:?}");
    assert!(!modes.contains(&"explore") && !modes.contains(&"general"), "subagents are no modes: {modes:?}");
    let mode_option = new["configOptions"].as_array().unwrap().iter().find(|o| o["id"] == "mode").unwrap().clone();
    assert_eq!(mode_option["category"], "mode");
    assert_eq!(mode_option["currentValue"], "build");

    let bad = c.err("session/set_mode", json!({ "sessionId": session, "modeId": "nonesuch" })).await;
    assert_eq!(bad.code, -32602);
    assert!(bad.message.contains("nonesuch"), "{}", bad.message);

    let answer = c.ok("session/set_mode", json!({ "sessionId": session, "modeId": "plan" })).await;
    assert_eq!(answer, json!({}));
    let (mut mode_update, mut option_update) = (None, None);
    while mode_update.is_none() || option_update.is_none() {
        let m = c.next_message().await;
        match m["params"]["update"]["sessionUpdate"].as_str() {
            Some("current_mode_update") => mode_update = Some(m),
            Some("config_option_update") => option_update = Some(m),
            _ => {}
        }
    }
    let mode_update = mode_update.unwrap();
    assert_eq!(mode_update["params"]["sessionId"], session.as_str());
    assert_eq!(mode_update["params"]["update"]["currentModeId"], "plan");
    let options = option_update.unwrap()["params"]["update"]["configOptions"].clone();
    assert_eq!(options.as_array().unwrap().iter().find(|o| o["id"] == "mode").unwrap()["currentValue"], "plan");

    // The next prompt runs as `plan`: the model is told so.
    mock.push(ScriptTurn { text: Some("a plan".into()), ..Default::default() });
    let (_, answer) = c.start_request(
        "session/prompt",
        json!({ "sessionId": session, "prompt": [{ "type": "text", "text": "what now" }] }),
    );
    let (answer, _) = finish(&c, answer).await;
    assert_eq!(answer["result"]["stopReason"], "end_turn", "{answer}");
    let request = mock.requests()[0].body.to_string();
    assert!(request.contains("You are in plan mode"), "{request}");

    // Back through the config option: the mode follows, and a load answers with it.
    let set =
        c.ok("session/set_config_option", json!({ "sessionId": session, "configId": "mode", "value": "build" })).await;
    assert_eq!(set["configOptions"][1]["currentValue"], "build");
    loop {
        let m = c.next_message().await;
        if m["params"]["update"]["sessionUpdate"] == "current_mode_update" {
            assert_eq!(m["params"]["update"]["currentModeId"], "build");
            break;
        }
    }
    let loaded = c.ok("session/load", json!({ "sessionId": session, "cwd": ws, "mcpServers": [] })).await;
    assert_eq!(loaded["modes"]["currentModeId"], "build", "{loaded}");
}

#[tokio::test]
async fn a_config_edit_that_changes_the_default_model_updates_the_options() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let (_child, c) = acp(&home, &mock).await;
    let ws = home.workspace();
    let new = c.ok("session/new", json!({ "cwd": ws, "mcpServers": [] })).await;
    let session = new["sessionId"].as_str().unwrap().to_owned();
    assert_eq!(new["configOptions"][0]["currentValue"], "mock/m");

    let config = json!({
        "model": "mock/other",
        "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url(), "models": { "other": {} } } },
    });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let update = loop {
        let m = c.next_message().await;
        if m["params"]["update"]["sessionUpdate"] == "config_option_update" {
            break m;
        }
    };
    assert_eq!(update["params"]["sessionId"], session.as_str());
    let model = &update["params"]["update"]["configOptions"][0];
    assert_eq!(model["id"], "model");
    assert_eq!(model["currentValue"], "mock/other", "{update}");
}

#[tokio::test]
async fn a_reasoning_model_offers_its_effort_as_an_option_that_the_next_prompt_sends() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let models = json!({ "m": { "reasoning": true }, "plain": {} });
    let config = json!({ "model": "mock/m", "reasoningEffort": "medium",
                         "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url(), "models": models } } });
    let (_child, c) = acp_with(&home, config).await;
    let new = c.ok("session/new", json!({ "cwd": home.workspace(), "mcpServers": [] })).await;
    let session = new["sessionId"].as_str().unwrap().to_owned();
    let option = |options: &Value| options.as_array().unwrap().iter().find(|o| o["id"] == "reasoning").cloned();
    let effort = option(&new["configOptions"]).expect("a reasoning model has the option");
    assert_eq!(effort["category"], "thought_level");
    assert_eq!(effort["currentValue"], "default");
    let values: Vec<&str> =
        effort["options"].as_array().unwrap().iter().map(|o| o["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["default", "minimal", "low", "medium", "high"]);
    assert_eq!(effort["options"][0]["name"], "Default (medium)");

    let bad = c
        .err("session/set_config_option", json!({ "sessionId": session, "configId": "reasoning", "value": "max" }))
        .await;
    assert_eq!(bad.code, -32602);
    let set = c
        .ok("session/set_config_option", json!({ "sessionId": session, "configId": "reasoning", "value": "high" }))
        .await;
    assert_eq!(option(&set["configOptions"]).unwrap()["currentValue"], "high");
    mock.push(ScriptTurn { text: Some("thought".into()), ..Default::default() });
    let (_, answer) = c
        .start_request("session/prompt", json!({ "sessionId": session, "prompt": [{ "type": "text", "text": "hm" }] }));
    let (answer, _) = finish(&c, answer).await;
    assert_eq!(answer["result"]["stopReason"], "end_turn", "{answer}");
    assert_eq!(mock.requests()[0].body["reasoning_effort"], "high");

    // A model that does not reason has no such option.
    let set = c
        .ok("session/set_config_option", json!({ "sessionId": session, "configId": "model", "value": "mock/plain" }))
        .await;
    assert!(option(&set["configOptions"]).is_none(), "{set}");
}

fn call(id: &str, name: &str, input: Value) -> ScriptTurn {
    ScriptTurn {
        tool_calls: vec![ScriptToolCall { id: Some(id.into()), name: name.into(), input }],
        ..Default::default()
    }
}

fn say(text: &str) -> ScriptTurn {
    ScriptTurn { text: Some(text.into()), ..Default::default() }
}

async fn prompt(c: &Client, session: &str, text: &str) -> Vec<Value> {
    let (_, answer) = c
        .start_request("session/prompt", json!({ "sessionId": session, "prompt": [{ "type": "text", "text": text }] }));
    let (answer, updates) = finish(c, answer).await;
    assert_eq!(answer["result"]["stopReason"], "end_turn", "{answer}");
    updates
}

fn updates_of<'a>(updates: &'a [Value], call_id: &str) -> Vec<&'a Value> {
    updates.iter().filter(|u| u["sessionUpdate"] == "tool_call_update" && u["toolCallId"] == call_id).collect()
}

#[tokio::test]
async fn a_subagents_progress_and_answer_are_the_content_of_its_task_call() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let (_child, c) = acp(&home, &mock).await;
    let ws = home.workspace();
    std::fs::write(std::path::Path::new(&ws).join("notes.md"), "hi").unwrap();
    let session =
        c.ok("session/new", json!({ "cwd": ws, "mcpServers": [] })).await["sessionId"].as_str().unwrap().to_owned();
    // The parent's call, the child's two turns, then the parent's last.
    let task = json!({ "description": "read the notes", "prompt": "Read notes.md", "agent": "general" });
    mock.push(call("t1", "task", task));
    mock.push(call("r1", "read", json!({ "filePath": "notes.md" })));
    mock.push(say("the notes say hi"));
    mock.push(say("done"));
    let updates = prompt(&c, &session, "delegate").await;

    let called = updates.iter().find(|u| u["sessionUpdate"] == "tool_call" && u["rawInput"]["agent"] == "general");
    let task_id = called.expect("the task call").get("toolCallId").unwrap().as_str().unwrap().to_owned();
    let on_task = updates_of(&updates, &task_id);
    let line = "→ read: notes.md";
    // While the child runs, its tool call shows in the task's content.
    assert!(
        on_task.iter().any(|u| u["status"] == "in_progress" && u["content"].to_string().contains(line)),
        "{on_task:?}"
    );
    // The last content ends with the child's answer, and the call completed.
    let last = on_task.iter().rev().find(|u| u["content"].is_array()).unwrap();
    assert_eq!(last["status"], "completed", "{last}");
    let content = last["content"].as_array().unwrap();
    assert!(content.iter().any(|b| b["content"]["text"] == line), "{last}");
    assert_eq!(content.last().unwrap()["content"]["text"], "the notes say hi", "{last}");
    assert_eq!(on_task.last().unwrap()["status"], "completed");
    // The child's tool call is not one of the parent's.
    assert!(!updates.iter().any(|u| u["sessionUpdate"] == "tool_call" && u["title"] == "read: notes.md"));

    // A load shows the same content from the log.
    c.ok("session/load", json!({ "sessionId": session, "cwd": ws, "mcpServers": [] })).await;
    let replayed = loop {
        let m = c.next_message().await;
        let u = &m["params"]["update"];
        if u["sessionUpdate"] == "tool_call_update" && u["toolCallId"] == task_id.as_str() && u["status"] == "completed"
        {
            break u.clone();
        }
    };
    assert_eq!(replayed["content"], last["content"]);
}

#[tokio::test]
async fn a_background_job_is_an_execute_call_whose_end_a_later_prompt_shows() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let (_child, c) = acp(&home, &mock).await;
    let ws = home.workspace();
    let session =
        c.ok("session/new", json!({ "cwd": ws, "mcpServers": [] })).await["sessionId"].as_str().unwrap().to_owned();
    // The job waits for the test's word, so it ends after the first prompt did.
    let command = "while [ ! -f go ]; do sleep 0.05; done; printf 'line one\\nbuilt ok\\n'";
    let bash = json!({ "command": command, "background": true, "description": "a background job" });
    mock.push(call("bg", "bash", bash));
    mock.push(say("started the build"));
    // The job's end wakes the idle session, whose turn this is.
    mock.push(say("the build passed"));
    let first = prompt(&c, &session, "build in the background").await;
    let job = first
        .iter()
        .find(|u| u["sessionUpdate"] == "tool_call" && u["kind"] == "execute" && u["title"] == command)
        .unwrap_or_else(|| panic!("the job's call: {first:?}"));
    assert_eq!(job["status"], "in_progress");
    let job_id = job["toolCallId"].as_str().unwrap().to_owned();
    assert!(updates_of(&first, &job_id).is_empty(), "{first:?}");

    std::fs::write(std::path::Path::new(&ws).join("go"), "").unwrap();
    for _ in 0..500 {
        if mock.requests().len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(mock.requests().len(), 3, "the job's end woke the session");
    mock.push(say("ok"));
    let second = prompt(&c, &session, "and now?").await;
    let ended = updates_of(&second, &job_id);
    assert_eq!(ended.len(), 1, "{second:?}");
    assert_eq!(ended[0]["status"], "completed");
    assert!(ended[0]["content"][0]["content"]["text"].as_str().unwrap().contains("built ok"), "{}", ended[0]);
    // Shown once: the next prompt does not show it again.
    mock.push(say("still ok"));
    let third = prompt(&c, &session, "again").await;
    assert!(updates_of(&third, &job_id).is_empty(), "{third:?}");
}

#[tokio::test]
async fn a_fork_carries_the_history_and_leaves_the_source_unchanged() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let (_child, c) = acp(&home, &mock).await;
    let ws = home.workspace();
    let session =
        c.ok("session/new", json!({ "cwd": ws, "mcpServers": [] })).await["sessionId"].as_str().unwrap().to_owned();
    mock.push(say("the first answer"));
    prompt(&c, &session, "the first question").await;

    let fork = c.ok("session/fork", json!({ "sessionId": session, "cwd": ws, "mcpServers": [] })).await;
    let forked = fork["sessionId"].as_str().unwrap().to_owned();
    assert_ne!(forked, session);
    assert_eq!(fork["modes"]["currentModeId"], "build", "{fork}");
    assert_eq!(fork["configOptions"][0]["id"], "model", "{fork}");
    assert_eq!(fork["configOptions"][0]["currentValue"], "mock/m", "{fork}");
    loop {
        let m = c.next_message().await;
        if m["params"]["update"]["sessionUpdate"] == "available_commands_update" {
            assert_eq!(m["params"]["sessionId"], forked.as_str());
            break;
        }
    }

    mock.push(say("the second answer"));
    prompt(&c, &forked, "the second question").await;
    let in_fork = mock.requests()[1].body.to_string();
    assert!(in_fork.contains("the first question") && in_fork.contains("the first answer"), "{in_fork}");
    assert!(in_fork.contains("the second question"), "{in_fork}");

    mock.push(say("the third answer"));
    prompt(&c, &session, "the third question").await;
    let in_source = mock.requests()[2].body.to_string();
    assert!(in_source.contains("the first answer") && in_source.contains("the third question"), "{in_source}");
    assert!(!in_source.contains("the second"), "{in_source}");

    assert_eq!(c.err("session/fork", json!({ "sessionId": "ses_nope", "cwd": ws })).await.code, -32002);
}
