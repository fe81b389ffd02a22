//! Background jobs against the mock model: a job's end waking an idle session and reaching the model in the next
//! request, `job/output` paging, `job/cancel` killing the process group, and a job that was running when the engine
//! was SIGKILLed marked interrupted (and its processes killed) by the next engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::mock::MockModel;
use common::{Client, Home, SocketEngine};
use keel::provider::scripted::{ScriptToolCall, ScriptTurn};
use serde_json::{Value, json};

fn background(command: &str) -> ScriptTurn {
    ScriptTurn {
        tool_calls: vec![ScriptToolCall {
            id: Some("call_bg".into()),
            name: "bash".into(),
            input: json!({ "command": command, "background": true, "description": "a background job" }),
        }],
        ..Default::default()
    }
}

fn say(text: &str) -> ScriptTurn {
    ScriptTurn { text: Some(text.into()), ..Default::default() }
}

fn write_config(home: &Home, mock: &MockModel) {
    let config = json!({
        "model": "mock/m",
        "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url() } },
        "permissions": [{ "action": "bash", "effect": "allow" }, { "action": "edit", "effect": "allow" }]
    });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
}

async fn prompt(c: &Client, session: &str) {
    c.ok("session/prompt", json!({ "sessionId": session, "input": [{ "type": "text", "text": "go" }] })).await;
}

fn closed(e: &Value) -> bool {
    e["type"] == "activity.closed"
}

fn alive(pid: i32) -> bool {
    // A zombie is not alive: it runs nothing.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}");
}

#[tokio::test]
async fn a_jobs_end_wakes_the_idle_session_and_reaches_the_model() {
    let home = Home::new();
    let mock = MockModel::start().await;
    write_config(&home, &mock);
    mock.push(background("sleep 0.3; printf 'line one\\nbuilt ok\\n'"));
    mock.push(say("started the build"));
    mock.push(say("the build passed"));
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    let session = c.create_session(&home.workspace()).await;
    let sub = c.subscribe(&session, 0).await;
    prompt(&c, &session).await;
    let first = c.events_until(&sub, closed).await;
    let started = first.iter().find(|e| e["type"] == "job.started").expect("job.started");
    let job_id = started["data"]["jobId"].as_str().unwrap().to_owned();
    let output = first.iter().find(|e| e["type"] == "tool.completed").unwrap()["data"]["output"].clone();
    assert!(output.as_str().unwrap().contains(&job_id), "{output}");

    // Nobody prompts again: the job's end opens the next activity.
    let second = c.events_until(&sub, closed).await;
    let completed = second.iter().find(|e| e["type"] == "job.completed").expect("job.completed");
    assert_eq!(completed["data"]["exitCode"], 0);
    assert_eq!(completed["data"]["output"], "line one\nbuilt ok\n");
    assert!(second.iter().any(|e| e["type"] == "input.admitted"));
    assert_eq!(second.last().unwrap()["data"]["reason"], "completed");
    let request = mock.requests()[2].body.to_string();
    assert!(request.contains("built ok") && request.contains(&job_id), "{request}");

    let jobs = c.ok("job/list", json!({ "sessionId": session })).await;
    assert_eq!(jobs["jobs"][0]["state"], "completed");
    assert_eq!(jobs["jobs"][0]["exitCode"], 0);
    let page = c.ok("job/output", json!({ "jobId": job_id, "limit": 5 })).await;
    assert_eq!((page["text"].as_str(), page["end"].as_bool()), (Some("line "), Some(false)));
    let rest = c.ok("job/output", json!({ "jobId": job_id, "offset": page["nextOffset"] })).await;
    assert_eq!((rest["text"].as_str(), rest["end"].as_bool()), (Some("one\nbuilt ok\n"), Some(true)));
    assert_eq!(c.err("job/output", json!({ "jobId": "job_nope" })).await.code, -32602);
}

#[tokio::test]
async fn job_cancel_kills_the_process_group() {
    let home = Home::new();
    let mock = MockModel::start().await;
    write_config(&home, &mock);
    mock.push(background("sleep 60 & echo $! > child.pid; sleep 60"));
    mock.push(say("waiting"));
    mock.push(say("it was cancelled"));
    let engine = SocketEngine::start(home.path(), &[]).await;
    let c = engine.connect().await;
    let ws = home.workspace();
    let session = c.create_session(&ws).await;
    let sub = c.subscribe(&session, 0).await;
    prompt(&c, &session).await;
    let events = c.events_until(&sub, closed).await;
    let job_id =
        events.iter().find(|e| e["type"] == "job.started").unwrap()["data"]["jobId"].as_str().unwrap().to_owned();
    let pid_file = Path::new(&ws).join("child.pid");
    eventually("the job wrote its child's pid", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| !p.trim().is_empty())
    })
    .await;
    let child: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert!(alive(child));
    let running = c.ok("job/list", json!({ "running": true })).await;
    assert_eq!(running["jobs"].as_array().unwrap().len(), 1);
    let got = c.ok("session/get", json!({ "sessionId": session })).await;
    assert_eq!(got["runningJobs"][0]["jobId"], job_id.as_str());

    assert_eq!(c.ok("job/cancel", json!({ "jobId": job_id })).await["cancelled"], true);
    let events = c.events_until(&sub, closed).await;
    assert!(events.iter().any(|e| e["type"] == "job.cancelled"), "{events:?}");
    eventually("the job's background child was killed", || !alive(child)).await;
    assert!(mock.requests()[2].body.to_string().contains("was cancelled"));
    assert_eq!(c.ok("job/cancel", json!({ "jobId": job_id })).await["cancelled"], false);
}

#[tokio::test]
async fn a_job_running_at_sigkill_is_marked_interrupted_by_the_next_engine() {
    let home = Home::new();
    let mock = MockModel::start().await;
    write_config(&home, &mock);
    mock.push(background("echo $$ > job.pid; sleep 60"));
    mock.push(say("waiting"));
    let ws = home.workspace();
    let a = SocketEngine::start_at(home.path(), "a.sock", &[]).await;
    let ca = a.connect().await;
    let session = ca.create_session(&ws).await;
    let sa = ca.subscribe(&session, 0).await;
    prompt(&ca, &session).await;
    ca.events_until(&sa, closed).await;
    let pid_file = Path::new(&ws).join("job.pid");
    eventually("the job wrote its pid", || std::fs::read_to_string(&pid_file).is_ok_and(|p| !p.trim().is_empty()))
        .await;
    let job: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let mut child = a.child;
    child.kill().await.unwrap();
    let _ = child.wait().await;
    assert!(alive(job), "a SIGKILLed engine leaves its job running");

    let b = SocketEngine::start_at(home.path(), "b.sock", &[]).await;
    let cb = b.connect().await;
    let sb = cb.subscribe(&session, 0).await;
    let events = cb.events_until(&sb, |e| e["type"] == "job.failed").await;
    assert!(events.last().unwrap()["data"]["error"].as_str().unwrap().contains("interrupted"));
    eventually("the orphaned job was killed", || !alive(job)).await;
    let jobs = cb.ok("job/list", json!({ "sessionId": session })).await;
    assert_eq!(jobs["jobs"][0]["state"], "failed");
}
