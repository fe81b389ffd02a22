//! editors/sdk-ts, the TypeScript client: its generated types match the committed protocol schema, and its Node
//! test suite (ESLint, tsc, then `node --test`) passes against this build of the engine on stdio, a Unix socket and
//! WebSocket, including a reconnect after a SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const GENERATED: &str = "src/generated/protocol.ts";

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("editors/sdk-ts")
}

async fn ensure_packages() {
    common::node::ensure_packages("the TypeScript SDK tests", &[(&sdk_dir(), "json-schema-to-typescript")]).await;
}

#[tokio::test]
async fn generated_types_are_fresh() {
    ensure_packages().await;
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("node").arg("scripts/generate.mjs").current_dir(sdk_dir()).output(),
    )
    .await
    .expect("the generator hung")
    .unwrap();
    assert!(out.status.success(), "scripts/generate.mjs failed: {}", String::from_utf8_lossy(&out.stderr));
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed_path = sdk_dir().join(GENERATED);
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&committed_path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "editors/sdk-ts/{GENERATED} is stale: run `npm run generate` in editors/sdk-ts \
         (or UPDATE_SCHEMA=1 cargo test --test sdk_ts)"
    );
}

#[tokio::test]
async fn node_suite_passes_against_the_engine() {
    ensure_packages().await;
    let home = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("npm");
    cmd.arg("test")
        .current_dir(sdk_dir())
        .env("KEEL_BIN", env!("CARGO_BIN_EXE_keel"))
        // The suite makes its own homes; this one catches anything that would fall back to the user's.
        .env("KEEL_HOME", home.path())
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // Each Node test has its own limit; this one only catches a suite that hangs anyway.
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output()).await.expect("npm test hung").unwrap();
    assert!(
        out.status.success(),
        "npm test in editors/sdk-ts failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
