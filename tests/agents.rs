//! Agents, instructions, subagents and skills against the mock model: `plan` refusing an edit that `build` makes, a
//! markdown agent's model, prompt, tools and rules reaching the request, `AGENTS.md` in the system prompt, a `task`
//! call running a child session whose approval the parent's client answers and whose answer is the tool's result,
//! an interrupt of the parent closing the child, and a skill loaded by the `skill` tool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::mock::MockModel;
use common::{Client, Home, SocketEngine};
use keel::provider::scripted::{ScriptToolCall, ScriptTurn};
use serde_json::{Value, json};

fn call(name: &str, input: Value) -> ScriptTurn {
    ScriptTurn {
        tool_calls: vec![ScriptToolCall { id: Some(format!("call_{name}")), name: name.into(), input }],
        ..Default::default()
    }
}

fn say(text: &str) -> ScriptTurn {
    ScriptTurn { text: Some(text.into()), ..Default::default() }
}

async fn start(home: &Home, mock: &MockModel, extra: Value) -> SocketEngine {
    let mut config =
        json!({ "model": "mock/m", "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url() } } });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    SocketEngine::start(home.path(), &[]).await
}

async fn prompt(c: &Client, session: &str, text: &str, agent: Option<&str>) {
    let mut params = json!({ "sessionId": session, "input": [{ "type": "text", "text": text }] });
    if let Some(agent) = agent {
        params["agent"] = json!(agent);
    }
    c.ok("session/prompt", params).await;
}

fn closed(e: &Value) -> bool {
    e["type"] == "activity.closed"
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn plan_refuses_an_edit_that_build_makes() {
    let home = Home::new();
    let mock = MockModel::start().await;
    // Edits are allowed by config, and still refused to `plan`.
    let engine = start(&home, &mock, json!({ "permissions": [{ "action": "edit", "effect": "allow" }] })).await;
    let c = engine.connect().await;
    let ws = home.workspace();
    let session = c.create_session(&ws).await;
    let sub = c.subscribe(&session, 0).await;
    let write_call = || call("write", json!({ "filePath": "plan.md", "content": "the plan" }));

    mock.push(write_call());
    mock.push(say("could not write"));
    prompt(&c, &session, "write the plan", Some("plan")).await;
    let events = c.events_until(&sub, closed).await;
    let failed = of_type(&events, "tool.failed");
    assert_eq!(failed.len(), 1, "{events:?}");
    assert!(failed[0]["data"]["error"].as_str().unwrap().contains("edit"), "{}", failed[0]);
    assert!(!Path::new(&ws).join("plan.md").exists());
    let request = &mock.requests()[0].body;
    assert!(request["messages"][0]["content"].as_str().unwrap().contains("plan mode"), "{request}");

    mock.push(write_call());
    mock.push(say("written"));
    prompt(&c, &session, "now write it", Some("build")).await;
    let events = c.events_until(&sub, closed).await;
    assert_eq!(of_type(&events, "tool.completed").len(), 1, "{events:?}");
    assert_eq!(std::fs::read_to_string(Path::new(&ws).join("plan.md")).unwrap(), "the plan");
}

#[tokio::test]
async fn a_markdown_agent_brings_its_model_prompt_tools_and_rules() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let other = MockModel::start().await;
    let extra = json!({ "providers": {
        "mock": { "wire": "openai-chat", "baseUrl": mock.url() },
        "other": { "wire": "openai-chat", "baseUrl": other.url() } } });
    let engine = start(&home, &mock, extra).await;
    let ws = home.workspace();
    write(
        &Path::new(&ws).join(".keel/agents/reviewer.md"),
        "---\ndescription: Reviews changes\nmodel: other/big\nsteps: 3\ntools:\n  - read\n  - grep\n\
         permission:\n  read:\n    \"secret*\": deny\n---\nYou are the reviewer. Be terse.\n",
    );
    write(&Path::new(&ws).join("secret.txt"), "hidden");
    let c = engine.connect().await;
    let agents = c.ok("agent/list", json!({ "cwd": ws })).await;
    let reviewer = agents["agents"].as_array().unwrap().iter().find(|a| a["name"] == "reviewer").unwrap().clone();
    assert_eq!(reviewer["description"], "Reviews changes");
    assert!(reviewer["source"].as_str().unwrap().ends_with(".keel/agents/reviewer.md"), "{reviewer}");
    let names: Vec<&str> = agents["agents"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert!(["build", "plan", "general", "explore"].iter().all(|n| names.contains(n)), "{names:?}");

    other.push(call("read", json!({ "filePath": "secret.txt" })));
    other.push(say("reviewed"));
    let session = c.create_session(&ws).await;
    let sub = c.subscribe(&session, 0).await;
    prompt(&c, &session, "review", Some("reviewer")).await;
    let events = c.events_until(&sub, closed).await;
    assert!(mock.requests().is_empty(), "the agent's model answers");
    let request = &other.requests()[0].body;
    assert_eq!(request["model"], "big");
    assert!(request["messages"][0]["content"].as_str().unwrap().contains("You are the reviewer."), "{request}");
    let tools: Vec<&str> =
        request["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(tools, ["grep", "read"]);
    let failed = of_type(&events, "tool.failed");
    assert!(failed[0]["data"]["error"].as_str().unwrap().contains("secret.txt"), "{events:?}");
    assert_eq!(of_type(&events, "activity.opened")[0]["data"]["stepLimit"], 3);
}

#[tokio::test]
async fn agents_md_and_claude_md_reach_the_system_prompt() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let engine = start(&home, &mock, json!({})).await;
    let root = Path::new(&home.workspace()).to_path_buf();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    write(&root.join("AGENTS.md"), "Run cargo test before you finish.");
    write(&root.join("crates/core/CLAUDE.md"), "This crate has no unsafe code.");
    write(&home.path().join("AGENTS.md"), "Answer in English.");
    let c = engine.connect().await;
    let session = c.create_session(&root.join("crates/core").display().to_string()).await;
    let sub = c.subscribe(&session, 0).await;
    mock.push(say("ok"));
    prompt(&c, &session, "hello", None).await;
    let events = c.events_until(&sub, closed).await;
    let system = mock.requests()[0].body["messages"][0]["content"].as_str().unwrap().to_owned();
    let order: Vec<usize> = ["Answer in English.", "Run cargo test", "no unsafe code"]
        .iter()
        .map(|t| system.find(t).unwrap_or_else(|| panic!("{t} missing from {system}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{system}");
    let started = of_type(&events, "turn.started")[0];
    let files: Vec<&str> =
        started["data"]["instructions"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[1].ends_with("AGENTS.md") && files[2].ends_with("crates/core/CLAUDE.md"), "{files:?}");
}

#[tokio::test]
async fn a_task_runs_a_child_session_whose_approval_the_parents_client_answers() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let engine = start(&home, &mock, json!({})).await;
    let ws = home.workspace();
    let c = engine.connect_with(json!({ "approvals": true })).await;
    let parent = c.create_session(&ws).await;
    let sub = c.subscribe(&parent, 0).await;
    // Parent turn, then the child's two turns, then the parent's last: the parent waits for its child.
    mock.push(call(
        "task",
        json!({ "description": "write notes", "prompt": "Write notes.md saying hi", "agent": "general" }),
    ));
    mock.push(call("write", json!({ "filePath": "notes.md", "content": "hi" })));
    mock.push(say("notes.md written"));
    mock.push(say("the subagent wrote the notes"));
    prompt(&c, &parent, "delegate the notes", None).await;

    // The child's write asks the parent's client, which never subscribed to the child.
    let mut events = Vec::new();
    let asked = loop {
        let m = c.next_message().await;
        if m["method"] == "approval/request" {
            break m;
        }
        if m["method"] == "session/event" && m["params"]["subscriptionId"] == sub {
            events.push(m["params"]["event"].clone());
        }
    };
    let child = asked["params"]["sessionId"].as_str().unwrap().to_owned();
    assert_ne!(child, parent);
    c.respond(&asked["id"], json!({ "decision": "once" }));
    events.extend(c.events_until(&sub, closed).await);
    let started = of_type(&events, "subagent.started");
    assert_eq!(started.len(), 1, "{events:?}");
    assert_eq!(started[0]["data"]["childSessionId"], child.as_str());
    assert_eq!(started[0]["data"]["agent"], "general");
    let completed = of_type(&events, "subagent.completed");
    assert_eq!(completed[0]["data"]["reason"], "completed");
    assert_eq!(completed[0]["data"]["answer"], "notes.md written");
    let result = of_type(&events, "tool.completed")[0]["data"]["output"].as_str().unwrap().to_owned();
    assert!(result.contains("notes.md written") && result.contains(&child), "{result}");
    assert_eq!(std::fs::read_to_string(Path::new(&ws).join("notes.md")).unwrap(), "hi");
    // The child's request held only its job, and was not offered `task` again.
    let child_request = &mock.requests()[1].body;
    assert!(child_request.to_string().contains("Write notes.md saying hi"));
    assert!(!child_request.to_string().contains("delegate the notes"), "{child_request}");
    let tools = child_request["tools"].to_string();
    assert!(!tools.contains("\"task\""), "{tools}");

    let children = c.ok("session/list", json!({ "parentId": parent })).await;
    assert_eq!(children["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(children["sessions"][0]["id"], child.as_str());
    assert_eq!(children["sessions"][0]["parentId"], parent.as_str());
    assert_eq!(children["sessions"][0]["agent"], "general");
    let roots = c.ok("session/list", json!({ "roots": true })).await;
    let ids: Vec<&str> = roots["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [parent.as_str()]);
}

#[tokio::test]
async fn interrupting_the_parent_interrupts_its_child() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let engine = start(&home, &mock, json!({})).await;
    let c = engine.connect().await;
    let parent = c.create_session(&home.workspace()).await;
    let sub = c.subscribe(&parent, 0).await;
    mock.push(call("task", json!({ "description": "look", "prompt": "look around", "agent": "explore" })));
    mock.push(ScriptTurn { text: Some("slow ".repeat(400)), chunk_delay_ms: 10, ..Default::default() });
    prompt(&c, &parent, "delegate", None).await;
    let started = c.events_until(&sub, |e| e["type"] == "subagent.started").await;
    let child = started.last().unwrap()["data"]["childSessionId"].as_str().unwrap().to_owned();
    let child_sub = c.subscribe(&child, 0).await;
    c.events_until(&child_sub, |e| e["type"] == "turn.started").await;
    c.ok("session/interrupt", json!({ "sessionId": parent })).await;
    // Both subscriptions share the connection, and either activity may be reported closed first.
    let (mut child_closed, mut parent_closed, mut events) = (None, None, Vec::new());
    while child_closed.is_none() || parent_closed.is_none() {
        let m = c.next_message().await;
        if m["method"] != "session/event" {
            continue;
        }
        let event = m["params"]["event"].clone();
        let mine =
            if m["params"]["subscriptionId"] == child_sub.as_str() { &mut child_closed } else { &mut parent_closed };
        if closed(&event) {
            mine.get_or_insert(event.clone());
        }
        if m["params"]["subscriptionId"] == sub.as_str() {
            events.push(event);
        }
    }
    assert_eq!(child_closed.unwrap()["data"]["reason"], "interrupted");
    assert_eq!(parent_closed.unwrap()["data"]["reason"], "interrupted");
    assert_eq!(of_type(&events, "subagent.completed")[0]["data"]["reason"], "interrupted");
}

#[tokio::test]
async fn the_skill_tool_loads_a_skill_with_its_files() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let engine = start(&home, &mock, json!({})).await;
    let ws = home.workspace();
    let skill = Path::new(&ws).join(".claude/skills/release");
    write(
        &skill.join("SKILL.md"),
        "---\nname: release\ndescription: Cut a release\n---\nBump the version, then tag.\n",
    );
    write(&skill.join("checklist.md"), "- changelog");
    let c = engine.connect().await;
    let listed = c.ok("skill/list", json!({ "cwd": ws })).await;
    assert_eq!(listed["skills"][0]["name"], "release");
    assert_eq!(listed["skills"][0]["description"], "Cut a release");

    mock.push(call("skill", json!({ "name": "release" })));
    mock.push(say("released"));
    let session = c.create_session(&ws).await;
    let sub = c.subscribe(&session, 0).await;
    prompt(&c, &session, "cut a release", None).await;
    let events = c.events_until(&sub, closed).await;
    let output = of_type(&events, "tool.completed")[0]["data"]["output"].as_str().unwrap().to_owned();
    assert!(output.contains("Bump the version, then tag.") && output.contains("checklist.md"), "{output}");
    let loaded = of_type(&events, "skill.loaded");
    assert_eq!(loaded.len(), 1, "{events:?}");
    assert_eq!(loaded[0]["data"]["name"], "release");
    assert_eq!(loaded[0]["data"]["callId"], of_type(&events, "tool.completed")[0]["data"]["callId"]);
    let system = mock.requests()[0].body["messages"][0]["content"].as_str().unwrap().to_owned();
    assert!(system.contains("- release: Cut a release"), "{system}");
}

#[tokio::test]
async fn a_slash_command_sends_its_template_with_the_arguments() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let extra = json!({ "commands": { "hello": { "template": "Say hello to $1.", "description": "Greets" } } });
    let engine = start(&home, &mock, extra).await;
    let ws = home.workspace();
    write(
        &Path::new(&ws).join(".keel/commands/fix.md"),
        "---\ndescription: Fix a failing test\nagent: plan\n---\nFind why $ARGUMENTS fails and propose a fix.\n",
    );
    write(&Path::new(&ws).join(".keel/skills/release/SKILL.md"), "---\ndescription: Cut a release\n---\nTag it.");
    let c = engine.connect().await;
    let listed = c.ok("command/list", json!({ "cwd": ws })).await;
    let names: Vec<&str> = listed["commands"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["compact", "fix", "hello", "init", "release", "review"]);
    let fix = listed["commands"].as_array().unwrap().iter().find(|c| c["name"] == "fix").unwrap();
    assert_eq!(fix["description"], "Fix a failing test");
    assert!(fix["source"].as_str().unwrap().ends_with(".keel/commands/fix.md"));

    let session = c.create_session(&ws).await;
    let sub = c.subscribe(&session, 0).await;
    mock.push(say("a plan"));
    c.ok("session/command", json!({ "sessionId": session, "command": "fix", "arguments": "the login test" })).await;
    let events = c.events_until(&sub, closed).await;
    assert_eq!(of_type(&events, "turn.started")[0]["data"]["agent"], "plan");
    let request = mock.requests()[0].body.to_string();
    assert!(request.contains("Find why the login test fails and propose a fix."), "{request}");

    mock.push(say("hello"));
    c.ok("session/command", json!({ "sessionId": session, "command": "hello", "arguments": "keel and more" })).await;
    c.events_until(&sub, closed).await;
    assert!(mock.requests()[1].body.to_string().contains("Say hello to keel."));

    let unknown = c.err("session/command", json!({ "sessionId": session, "command": "nope" })).await;
    assert_eq!(unknown.code, -32602);
    assert!(unknown.message.contains("fix") && unknown.message.contains("compact"), "{}", unknown.message);

    // `compact` queues a compaction, like `session/compact`.
    c.ok("session/command", json!({ "sessionId": session, "command": "compact" })).await;
    let events = c.events_until(&sub, closed).await;
    assert_eq!(of_type(&events, "input.admitted")[0]["data"]["kind"], "compact");
}

#[tokio::test]
async fn a_background_task_lets_the_parent_go_on_and_its_answer_wakes_the_parent() {
    let home = Home::new();
    let mock = MockModel::start().await;
    // The child runs on a model of its own, so the parent's and the child's requests never race for one script.
    let kid = MockModel::start().await;
    let providers = json!({ "mock": { "wire": "openai-chat", "baseUrl": mock.url() },
                            "kid": { "wire": "openai-chat", "baseUrl": kid.url() } });
    let engine =
        start(&home, &mock, json!({ "providers": providers, "agents": { "general": { "model": "kid/m" } } })).await;
    let c = engine.connect_with(json!({})).await;
    let parent = c.create_session(&home.workspace()).await;
    let sub = c.subscribe(&parent, 0).await;
    let job =
        json!({ "description": "look around", "prompt": "Say what you see", "agent": "general", "background": true });
    mock.push(call("task", job));
    mock.push(say("carrying on meanwhile"));
    mock.push(say("the child saw a tidy repo"));
    kid.push(say("a tidy repo"));
    prompt(&c, &parent, "look around in the background", None).await;

    let mut events = Vec::new();
    while of_type(&events, "activity.closed").len() < 2 {
        events.extend(c.events_until(&sub, closed).await);
    }
    let output = of_type(&events, "tool.completed")[0]["data"]["output"].as_str().unwrap().to_owned();
    assert!(output.contains("in the background as job"), "{output}");
    let started = of_type(&events, "job.started");
    assert_eq!(started[0]["data"]["command"], "task general: look around");
    let job_id = started[0]["data"]["jobId"].clone();
    assert_eq!(of_type(&events, "subagent.completed")[0]["data"]["answer"], "a tidy repo");
    let ended = of_type(&events, "job.completed");
    assert_eq!(ended[0]["data"]["jobId"], job_id);
    assert_eq!(ended[0]["data"]["output"], "a tidy repo");

    let requests = mock.requests();
    assert_eq!(requests.len(), 3, "the task call, the turn after it, the turn the answer woke");
    let woke = requests[2].body.to_string();
    assert!(woke.contains("Background subagent general") && woke.contains("a tidy repo"), "{woke}");
    assert_eq!(kid.requests().len(), 1);
    let jobs = c.ok("job/list", json!({ "sessionId": parent })).await;
    assert_eq!(jobs["jobs"][0]["state"], "completed", "{jobs}");
}

#[tokio::test]
async fn a_subscription_that_includes_children_follows_each_subagent_from_its_first_event() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let engine = start(&home, &mock, json!({})).await;
    let c = engine.connect().await;
    let parent = c.create_session(&home.workspace()).await;
    let r = c.ok("session/subscribe", json!({ "sessionId": parent, "afterSeq": 0, "includeChildren": true })).await;
    let sub = r["subscriptionId"].as_str().unwrap().to_owned();
    mock.push(call("task", json!({ "description": "look", "prompt": "look around", "agent": "explore" })));
    mock.push(say("nothing to see"));
    mock.push(say("the child saw nothing"));
    prompt(&c, &parent, "delegate", None).await;

    // The parent's activity closes after its child's, so by then both logs have come through.
    let (mut parents, mut childs, mut child_sub) = (Vec::new(), Vec::new(), None::<String>);
    loop {
        let m = c.next_message().await;
        if m["method"] != "session/event" {
            continue;
        }
        let (id, event) = (m["params"]["subscriptionId"].as_str().unwrap().to_owned(), m["params"]["event"].clone());
        if id == sub {
            parents.push(event.clone());
            if closed(&event) {
                break;
            }
        } else {
            assert!(id.starts_with(&format!("{sub}/")), "{id}");
            child_sub.get_or_insert(id);
            childs.push(event);
        }
    }
    let child = of_type(&parents, "subagent.started")[0]["data"]["childSessionId"].as_str().unwrap().to_owned();
    assert_eq!(child_sub.unwrap(), format!("{sub}/{child}"));
    assert!(childs.iter().all(|e| e["sessionId"] == child.as_str()));
    let seqs: Vec<u64> = childs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "the child's log from its first event, in order");
    assert_eq!(childs[0]["type"], "session.created");
    assert_eq!(of_type(&childs, "text.completed")[0]["data"]["text"], "nothing to see");
    assert!(closed(childs.last().unwrap()) || childs.iter().any(closed));

    // A plain subscription does not.
    let plain = c.subscribe(&parent, 0).await;
    c.events_until(&plain, closed).await;
    c.ok("session/unsubscribe", json!({ "subscriptionId": sub })).await;
    let e = c.err("session/unsubscribe", json!({ "subscriptionId": format!("{sub}/{child}") })).await;
    assert_eq!(e.code, -32602, "the child's subscription ended with its parent's");
}

#[tokio::test]
async fn subagents_nest_two_deep_and_no_deeper() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let nest = json!({ "description": "hands its job on", "mode": "subagent" });
    let engine = start(&home, &mock, json!({ "agents": { "nest": nest } })).await;
    let c = engine.connect().await;
    let root = c.create_session(&home.workspace()).await;
    let sub = c.subscribe(&root, 0).await;
    let delegate = || call("task", json!({ "description": "pass it on", "prompt": "do it", "agent": "nest" }));
    // The requests come one after another: root, child, grandchild (whose own task call is refused), then the
    // answers back up.
    mock.push(delegate());
    mock.push(delegate());
    mock.push(delegate());
    mock.push(say("the grandchild did it"));
    mock.push(say("the child passed it up"));
    mock.push(say("done"));
    prompt(&c, &root, "go", None).await;
    let events = c.events_until(&sub, closed).await;
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    let grandchild_request = mock.requests()[3].body.to_string();
    assert!(grandchild_request.contains("subagents nest at most 2 deep"), "{grandchild_request}");
    let roots = c.ok("session/list", json!({ "roots": true })).await;
    assert_eq!(roots["sessions"].as_array().unwrap().len(), 1, "{roots}");
    let all = c.ok("session/list", json!({})).await;
    assert_eq!(all["sessions"].as_array().unwrap().len(), 3, "{all}");
}
