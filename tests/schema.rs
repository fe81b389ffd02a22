//! The committed protocol schema is what `keel schema` generates, and every method in it is served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Engine, Home};
use serde_json::{Value, json};

const SCHEMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/schema");
const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/schema/protocol.schema.json");

#[tokio::test]
async fn committed_schema_is_fresh() {
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["schema", "--out"])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    for name in ["protocol.schema.json", "config.schema.json"] {
        let generated = std::fs::read_to_string(out.path().join(name)).unwrap();
        let committed_path = std::path::Path::new(SCHEMA_DIR).join(name);
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&committed_path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
        assert!(
            committed == generated,
            "protocol/schema/{name} is stale: run `cargo run -- schema --out protocol/schema` \
             (or UPDATE_SCHEMA=1 cargo test --test schema)"
        );
    }
}

#[tokio::test]
async fn every_client_method_in_the_schema_is_served() {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(COMMITTED).unwrap()).unwrap();
    let home = Home::new();
    let engine = Engine::ready(home.path()).await;
    let methods = schema["methods"].as_object().unwrap();
    assert!(methods.len() >= 11);
    for (name, method) in methods {
        if method["direction"] != "clientToServer" || name == "initialize" || name == "shutdown" {
            continue;
        }
        // Empty params are wrong for most methods: what matters is that the method exists.
        if let Err(e) = engine.client.call(name, json!({})).await {
            assert_ne!(e.code, -32601, "{name} is in the schema but not served");
        }
    }
}
