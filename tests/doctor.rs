//! `keel doctor` on good and broken homes: what it shows, what it must never show (a key), and its exit status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;

use common::Home;
use common::mock::MockModel;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const ENV_KEY: &str = "sk-env-not-real-0123456789";
const STORED_KEY: &str = "sk-stored-not-real-9876543210";

struct Case<'a> {
    name: &'a str,
    /// The global config.
    config: Option<Value>,
    /// A file in the workspace and its text.
    project: Option<(&'a str, &'a str)>,
    env: &'a [(&'a str, &'a str)],
    /// A key stored with `keel auth set`.
    stored: Option<&'a str>,
    exit: i32,
    /// Lines that must each be in the output, every fragment on the same line.
    shows: &'a [&'a [&'a str]],
}

async fn check(case: Case<'_>) {
    let home = Home::new();
    let ws = home.workspace();
    if let Some(config) = &case.config {
        std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    }
    if let Some((name, text)) = case.project {
        std::fs::write(std::path::Path::new(&ws).join(name), text).unwrap();
    }
    if let Some(provider) = case.stored {
        let mut auth =
            common::keel_command(home.path()).args(["auth", "set", provider]).stdin(Stdio::piped()).spawn().unwrap();
        auth.stdin.take().unwrap().write_all(STORED_KEY.as_bytes()).await.unwrap();
        assert!(auth.wait().await.unwrap().success(), "{}", case.name);
    }
    let mut cmd = common::keel_command(home.path());
    cmd.args(["doctor", "-C", &ws]);
    for (k, v) in case.env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(common::WAIT, cmd.output()).await.expect("doctor finishes").unwrap();
    let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
    let name = case.name;
    assert_eq!(out.status.code(), Some(case.exit), "{name}:\n{text}");
    for fragments in case.shows {
        assert!(
            text.lines().any(|line| fragments.iter().all(|f| line.contains(f))),
            "{name}: no line with {fragments:?}:\n{text}"
        );
    }
    for secret in [ENV_KEY, STORED_KEY] {
        assert!(!text.contains(secret), "{name}: a key is shown:\n{text}");
    }
}

#[tokio::test]
async fn a_good_home_is_all_well() {
    let mock = MockModel::start().await;
    mock.list_models(vec![json!({ "id": "m" }), json!({ "id": "n" })]);
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plugins/pipefail.py");
    let config = json!({
        "model": "mock/m",
        "providers": { "mock": { "wire": "openai-chat", "baseUrl": mock.url() } },
        "plugins": { "pipefail": { "command": ["python3", example] } },
    });
    check(Case {
        name: "good",
        config: Some(config),
        project: Some(("keel.jsonc", "// the project's\n{ \"agents\": { \"build\": { \"steps\": 5 } } }")),
        env: &[("OPENAI_API_KEY", ENV_KEY)],
        stored: Some("anthropic"),
        exit: 0,
        shows: &[
            &["config", "global", "config.jsonc", "ok", "valid"],
            &["config", "project", "keel.jsonc", "ok", "valid"],
            &["provider", "mock", "ok", "models listed: 2"],
            &["provider", "openai", "ok", "key set (env OPENAI_API_KEY)"],
            &["provider", "anthropic", "ok", "key set (auth store)"],
            &["model", "mock/m", "ok", "default"],
            &["mcp", "(none)", "ok"],
            &["store", "sqlite", "keel.db", "ok", "0 sessions"],
            &["plugin", "pipefail", "ok", "hooks: tool/before", "tools: word_count"],
            &["all well"],
        ],
    })
    .await;
}

#[tokio::test]
async fn broken_homes_say_what_is_wrong_and_exit_1() {
    let cases = [
        Case {
            name: "a value of the wrong kind",
            config: Some(json!({ "model": "x/y", "providers": { "local": { "wire": "carrier-pigeon" } } })),
            project: None,
            env: &[],
            stored: None,
            exit: 1,
            shows: &[
                &["config", "config.jsonc", "FAIL", "providers.local.wire", "carrier-pigeon"],
                &["model", "default", "FAIL", "the config does not load"],
                &["2 problems"],
            ],
        },
        Case {
            name: "no model configured",
            config: None,
            project: None,
            env: &[],
            stored: None,
            exit: 1,
            shows: &[
                &["config", "(no config file)", "note"],
                &["model", "default", "FAIL", "no model configured"],
                &["plugin", "(none)", "ok"],
            ],
        },
        Case {
            name: "a project file that does not parse",
            config: None,
            project: Some(("keel.jsonc", "{ \"model\": \"a/b\", ")),
            env: &[],
            stored: None,
            exit: 1,
            shows: &[&["config", "project", "keel.jsonc", "FAIL"], &["problems"]],
        },
        Case {
            name: "a missing key, a provider that is down, an MCP server that does not start",
            config: Some(json!({
                "model": "openai/gpt-5",
                "providers": { "down": { "wire": "openai-chat", "baseUrl": "http://127.0.0.1:9/v1" } },
                "mcp": { "ghost": { "type": "local", "command": ["/nonexistent/keel-doctor-ghost"] } },
                "plugins": { "phantom": { "command": ["/nonexistent/keel-doctor-phantom"] } },
            })),
            project: None,
            env: &[("ANTHROPIC_API_KEY", ENV_KEY)],
            stored: None,
            exit: 1,
            shows: &[
                &["config", "config.jsonc", "ok"],
                &["provider", "openai", "FAIL", "key missing", "OPENAI_API_KEY"],
                &["provider", "down", "FAIL", "unreachable"],
                &["provider", "anthropic", "ok", "key set (env ANTHROPIC_API_KEY)"],
                &["model", "openai/gpt-5", "FAIL", "no credentials"],
                &["mcp", "ghost", "FAIL"],
                &["plugin", "phantom", "FAIL", "cannot start"],
                &["problems"],
            ],
        },
    ];
    for case in cases {
        check(case).await;
    }
}
