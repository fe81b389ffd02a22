//! editors/vscode: its npm test (tsc against VS Code's API types, ESLint, the bundles built, then `node --test`) passes
//! against this build of the engine: the extension's bundle activated with a stand-in `vscode` module, and the
//! panel's UI in headless Chromium through the WebSocket listener. Without Chromium the browser part says it
//! skipped, unless KEEL_REQUIRE_CHROMIUM is set (CI sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

fn editors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("editors")
}

async fn ensure_packages() {
    let (sdk, vscode) = (editors().join("sdk-ts"), editors().join("vscode"));
    common::node::ensure_packages(
        "the VS Code extension tests",
        &[(&sdk, "vscode-jsonrpc"), (&vscode, "puppeteer-core")],
    )
    .await;
}

fn chromium() -> Option<PathBuf> {
    let named = std::env::var_os("CHROMIUM").map(PathBuf::from);
    named.into_iter().chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from)).find(|p| p.exists())
}

#[tokio::test]
async fn extension_and_panel_suite_passes_against_the_engine() {
    ensure_packages().await;
    let home = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("npm");
    cmd.arg("test")
        .current_dir(editors().join("vscode"))
        .env("KEEL_BIN", env!("CARGO_BIN_EXE_keel"))
        .env("KEEL_HOME", home.path())
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match chromium() {
        Some(path) => {
            cmd.env("CHROMIUM", path);
        }
        None if std::env::var_os("KEEL_REQUIRE_CHROMIUM").is_some() => {
            panic!("KEEL_REQUIRE_CHROMIUM is set but no Chromium was found (apt-get install chromium)")
        }
        None => {
            eprintln!("skipped the panel's browser tests: no Chromium (apt-get install chromium)");
            cmd.env("KEEL_SKIP_BROWSER", "1");
        }
    }
    // Each Node test has its own limits; this one only catches a suite that hangs anyway.
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output()).await.expect("npm test hung").unwrap();
    assert!(
        out.status.success(),
        "npm test in editors/vscode failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
