//! `keel run`: the one-shot driver, from a fresh machine with no model to a mock provider, text and NDJSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Home;
use common::mock::MockModel;
use keel::provider::scripted::{ScriptError, ScriptToolCall, ScriptTurn, ScriptUsage};
use serde_json::{Value, json};

async fn keel_run(home: &Home, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = common::keel_command(home.path());
    cmd.arg("run").args(args).current_dir(home.workspace());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(common::WAIT, cmd.output()).await.expect("keel run hung").unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// `keel run` with `input` on its stdin (closed after it).
async fn keel_run_with_stdin(home: &Home, args: &[&str], input: &[u8]) -> std::process::Output {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let mut child = common::keel_command(home.path())
        .arg("run")
        .args(args)
        .current_dir(home.workspace())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).await.unwrap();
    tokio::time::timeout(common::WAIT, child.wait_with_output()).await.expect("keel run hung").unwrap()
}

fn mock_config(home: &Home, mock: &MockModel) {
    let config =
        json!({ "model": "mock/m", "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url() } } });
    std::fs::write(home.path().join("config.jsonc"), format!("// test config\n{config}")).unwrap();
}

#[tokio::test]
async fn without_a_model_the_scripted_provider_says_how_to_configure_one() {
    let home = Home::new();
    let (code, stdout, stderr) = keel_run(&home, &[], &["hello"]).await;
    assert_eq!(code, 1, "the offline answer is shown, and the run is not a success: {stderr}");
    assert!(stderr.contains("no model is configured"), "{stderr}");
    assert!(stdout.contains("no model configured"), "{stdout}");
    assert!(stdout.contains("not a model"));
    assert!(stdout.contains("OPENAI_API_KEY"));
}

#[tokio::test]
async fn the_shipped_example_script_runs_a_whole_turn_with_a_tool() {
    let home = Home::new();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.json");
    let (code, stdout, stderr) =
        keel_run(&home, &[("KEEL_SCRIPT", script)], &["--approve", "allow", "Write notes"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("→ write") && stderr.contains("? write (edit): notes.md") && stderr.contains("→ edit"),
        "{stderr}"
    );
    assert!(stdout.contains("Done: notes.md"), "{stdout}");
    // Streamed text is printed once, whatever the order of deltas and completed events.
    assert_eq!(stdout.matches("precise.").count(), 1, "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("Done: notes.md")), "{stdout}");
    let notes = std::fs::read_to_string(std::path::Path::new(&home.workspace()).join("notes.md")).unwrap();
    assert!(notes.contains("a headless coding-agent engine driven over JSON-RPC."), "{notes}");

    // Without an answer to its approval, the write is refused and the model is told; the exit status says so.
    let other = Home::new();
    let (code, _, stderr) = keel_run(&other, &[("KEEL_SCRIPT", script)], &["Write notes"]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("rejected") && stderr.contains("2 tool call(s) were refused"), "{stderr}");
}

#[tokio::test]
async fn text_and_json_output_against_a_mock_model_and_continuing_a_session() {
    let home = Home::new();
    let mock = MockModel::start().await;
    mock.push(ScriptTurn {
        tool_calls: vec![ScriptToolCall { id: None, name: "todowrite".into(), input: json!({ "todos": [] }) }],
        ..Default::default()
    });
    mock.push(ScriptTurn {
        text: Some("The answer is 42.".into()),
        usage: Some(ScriptUsage { input: 1_500, output: 12, ..Default::default() }),
        ..Default::default()
    });
    mock.push(ScriptTurn { text: Some("Still 42.".into()), ..Default::default() });
    mock_config(&home, &mock);

    let (code, stdout, stderr) = keel_run(&home, &[], &["What", "is", "the", "answer?"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "The answer is 42.");
    // The figures close the run on stderr: the mock's model is unknown to the catalog, so its window is the
    // default 128,000 and its price nothing.
    let figures = stderr.lines().last().unwrap();
    assert_eq!(figures, "2 turns · 1.5k in, 12 out · context 1.5k of 128k (1%) · $0.0000", "{stderr}");
    let session = stderr.lines().find_map(|l| l.strip_prefix("session ")).unwrap().to_owned();
    assert_eq!(mock.requests()[0].body["messages"][1]["content"], "What is the answer?");

    let (code, stdout, stderr) =
        keel_run(&home, &[], &["--session", &session, "--format", "json", "And", "now?"]).await;
    assert_eq!(code, 0, "{stderr}");
    let mut events: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // One summary object closes the stream.
    let summary = events.pop().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!((summary["reason"].as_str(), summary["turns"].as_u64()), (Some("completed"), Some(1)));
    assert_eq!(events.first().unwrap()["type"], "input.admitted");
    assert_eq!(events.last().unwrap()["type"], "activity.closed");
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    assert!(events.iter().all(|e| e["sessionId"] == session.as_str()));
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // The continued session carries the earlier exchange to the model.
    let history = mock.requests()[2].body["messages"].to_string();
    assert!(history.contains("The answer is 42.") && history.contains("And now?"), "{history}");
}

#[tokio::test]
async fn a_failed_activity_exits_non_zero_with_the_reason() {
    let home = Home::new();
    let mock = MockModel::start().await;
    mock.push(ScriptTurn {
        error: Some(ScriptError { status: 401, message: "bad key".into(), retry_after: None }),
        ..Default::default()
    });
    mock_config(&home, &mock);
    let (code, _, stderr) = keel_run(&home, &[], &["hi"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("failed") && stderr.contains("bad key"), "{stderr}");

    let (code, _, stderr) = keel_run(&home, &[], &["--model", "nowhere/x", "hi"]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("unknown provider"), "{stderr}");
    let (code, _, stderr) = keel_run(&home, &[], &["--session", "ses_missing", "hi"]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("not found"), "{stderr}");
}

#[tokio::test]
async fn an_answer_cut_at_the_output_limit_and_a_retry_are_told_in_words() {
    let home = Home::new();
    let mock = MockModel::start().await;
    mock.push(ScriptTurn {
        error: Some(ScriptError { status: 503, message: "busy, try later".into(), retry_after: None }),
        ..Default::default()
    });
    mock.push(ScriptTurn { text: Some("The answer is".into()), finish: Some("length".into()), ..Default::default() });
    mock_config(&home, &mock);
    let (code, stdout, stderr) = keel_run(&home, &[("KEEL_RETRY_BASE_MS", "10")], &["What?"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "The answer is");
    assert!(stderr.contains("the answer was cut off"), "{stderr}");
    assert!(stderr.contains("retrying in") && stderr.contains("busy, try later"), "{stderr}");
    assert!(!stderr.contains("\"turnId\""), "retries are words, not JSON: {stderr}");
}

#[tokio::test]
async fn admin_commands_refuse_unknown_providers_and_a_closed_pipe_ends_them_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let home = Home::new();
    let run = |args: &'static [&'static str]| {
        let mut cmd = common::keel_command(home.path());
        cmd.args(args).stdin(Stdio::null());
        async move { tokio::time::timeout(common::WAIT, cmd.output()).await.expect("keel hung").unwrap() }
    };
    for args in [&["models", "--provider", "nope"][..], &["auth", "set", "bogusprov"][..]] {
        let out = run(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("unknown provider") && stderr.contains("openai"), "{args:?}: {stderr}");
    }
    assert!(run(&["models", "--provider", "openai"]).await.status.success());

    // The reader is gone before keel writes a line.
    let mut child =
        common::keel_command(home.path()).arg("models").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = tokio::time::timeout(common::WAIT, child.wait_with_output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success() || out.status.signal() == Some(libc::SIGPIPE), "{:?}: {stderr}", out.status);
}

#[tokio::test]
async fn a_broken_config_is_an_error_naming_the_file() {
    let home = Home::new();
    std::fs::write(home.path().join("config.jsonc"), r#"{ "model": "mock/m", "providers": { "mock": 42 } }"#).unwrap();
    let (code, stdout, stderr) = keel_run(&home, &[], &["hello"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("config.jsonc"), "{stderr}");
    assert!(stdout.is_empty(), "nothing ran: {stdout}");
    std::fs::write(home.path().join("config.jsonc"), "{ \"model\": ").unwrap();
    let (code, _, stderr) = keel_run(&home, &[], &["hello"]).await;
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test]
async fn the_prompt_from_stdin_continue_and_quiet() {
    let home = Home::new();
    let mock = MockModel::start().await;
    mock.push(ScriptTurn {
        text: Some("Looking.".into()),
        tool_calls: vec![ScriptToolCall { id: None, name: "todowrite".into(), input: json!({ "todos": [] }) }],
        ..Default::default()
    });
    mock.push(ScriptTurn { text: Some("First answer.".into()), ..Default::default() });
    mock.push(ScriptTurn { text: Some("Second answer.".into()), ..Default::default() });
    mock_config(&home, &mock);

    let out = keel_run_with_stdin(&home, &["-q", "-"], b"a question\nover two lines\n").await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "First answer.\n", "only the final answer");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(mock.requests()[0].body["messages"][1]["content"], "a question\nover two lines\n");

    let (code, stdout, stderr) = keel_run(&home, &[], &["-c", "-q", "and", "then?"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "Second answer.\n");
    let history = mock.requests()[2].body["messages"].to_string();
    assert!(history.contains("First answer.") && history.contains("and then?"), "continued: {history}");
    let (code, _, stderr) = keel_run(&Home::new(), &[], &["--continue", "hi"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no session to continue"), "{stderr}");
}

#[tokio::test]
async fn approve_ask_asks_once_and_again_after_a_typo() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let write =
        ScriptToolCall { id: None, name: "write".into(), input: json!({ "filePath": "a.txt", "content": "A" }) };
    mock.push(ScriptTurn { tool_calls: vec![write], ..Default::default() });
    mock.push(ScriptTurn { text: Some("Written.".into()), ..Default::default() });
    mock_config(&home, &mock);
    let out = keel_run_with_stdin(&home, &["--approve", "ask", "write it"], b"yse\no\n").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("approve?").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("please answer").count(), 1, "{stderr}");
    assert_eq!(std::fs::read_to_string(std::path::Path::new(&home.workspace()).join("a.txt")).unwrap(), "A");
}

#[tokio::test]
async fn json_output_of_a_new_session_starts_with_session_created() {
    let home = Home::new();
    let mock = MockModel::start().await;
    mock.push(ScriptTurn { text: Some("Hi.".into()), ..Default::default() });
    mock_config(&home, &mock);
    let (code, stdout, stderr) = keel_run(&home, &[], &["-f", "json", "hello"]).await;
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.first().unwrap()["type"], "session.created");
    assert_eq!(lines.first().unwrap()["seq"], 1);
    assert_eq!(lines.last().unwrap()["type"], "summary");
    let seqs: Vec<u64> = lines[..lines.len() - 1].iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gapless from 1: {seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_interrupts_the_activity_and_exits_130() {
    use std::process::Stdio;
    let home = Home::new();
    let mock = MockModel::start().await;
    mock_config(&home, &mock);
    mock.push(ScriptTurn { text: Some("word ".repeat(200)), chunk_delay_ms: 50, ..Default::default() });
    let child = common::keel_command(home.path())
        .args(["run", "--format", "json", "long answer"])
        .current_dir(home.workspace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..1000 {
        if !mock.requests().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) }, 0);
    let out = tokio::time::timeout(common::WAIT, child.wait_with_output()).await.expect("keel run hung").unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let closed: Value = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["type"] == "activity.closed")
        .unwrap();
    assert_eq!(closed["data"]["reason"], "interrupted");
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!((summary["type"].as_str(), summary["error"].as_str()), (Some("summary"), Some("interrupted")));
}

#[tokio::test]
async fn effort_is_sent_to_a_reasoning_model_and_kept_for_the_session() {
    let home = Home::new();
    let mock = MockModel::start().await;
    let models = json!({ "m": { "reasoning": true } });
    let config = json!({ "model": "mock/m",
                         "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url(), "models": models } } });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    for _ in 0..2 {
        mock.push(ScriptTurn { text: Some("ok".into()), ..Default::default() });
    }
    let (code, _, stderr) = keel_run(&home, &[], &["-e", "high", "think"]).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = keel_run(&home, &[], &["-c", "again"]).await;
    assert_eq!(code, 0, "{stderr}");
    let sent: Vec<Value> = mock.requests().iter().map(|r| r.body["reasoning_effort"].clone()).collect();
    assert_eq!(sent, [json!("high"), json!("high")]);
    let (code, _, stderr) = keel_run(&home, &[], &["--effort", "extreme", "x"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("minimal, low, medium or high"), "{stderr}");
}
