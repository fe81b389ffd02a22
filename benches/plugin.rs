//! `cargo bench --bench plugin`: what a plugin hook adds to a tool call, in process (no model): `tool/before`
//! answered by the example plugin (`examples/plugins/pipefail.py`, Python) over its stdio, once with a rewrite
//! (`bash`) and once with no change (`read`), against the same call with no plugin configured; and one
//! `tool/call` of its `word_count` tool. Prints, asserts nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel::config::Paths;
use keel::engine::Engine;
use keel::session::Settings;
use keel::tool::{ToolContext, ToolSource};
use keel_protocol::plugin::PluginStatus;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WARMUP: usize = 50;
const CALLS: usize = 2000;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let home = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plugins/pipefail.py");
    let config = json!({ "plugins": { "pipefail": { "command": ["python3", example] } } });
    std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
    let paths = Paths { config_dir: home.path().to_owned(), data_dir: home.path().to_owned() };
    let settings = Settings { discover: false, list_models: false, watch_config: false, ..Settings::default() };
    let engine = Engine::open(paths, settings).unwrap();

    let host = engine.plugin_host();
    // Each call's records must be empty of failures: a timed failure is no round trip.
    let before = async |tool: &str, input: serde_json::Value| {
        let mut records = Vec::new();
        let _ = host.tool_before("s", "c", tool, input, &mut records).await;
        assert!(!records.iter().any(|r| matches!(r, keel_protocol::catalogue::EventBody::PluginFailed(_))));
    };
    let none = time(async || before("read", json!({ "filePath": "a" })).await).await;

    let started = Instant::now();
    let _server = keel::api::start_plugins(&engine, home.path()).unwrap();
    while engine.plugins().first().is_none_or(|p| p.status != PluginStatus::Ready || p.hooks.is_empty()) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ready = started.elapsed();
    let unchanged = time(async || before("read", json!({ "filePath": "a" })).await).await;
    let rewritten = time(async || before("bash", json!({ "command": "make | tee log" })).await).await;

    let tool = host.tools(None).into_iter().find(|t| t.name() == "word_count").unwrap();
    let ctx = ToolContext {
        session_id: "s".into(),
        call_id: "c".into(),
        cwd: home.path().to_owned(),
        output_dir: home.path().join("out"),
        cancel: CancellationToken::new(),
        sandbox: Arc::default(),
    };
    let call = time(async || tool.run(json!({ "text": "one two three" }), ctx.clone()).await.unwrap()).await;

    println!("Plugin hook latency, {CALLS} sequential calls after {WARMUP} warm-up ones (median / p95)");
    println!("  example plugin (python3) registered after   {:>8.1} ms", ready.as_secs_f64() * 1e3);
    println!("  tool/before, no plugin configured           {:>8.2} µs / {:>8.2} µs", none.0, none.1);
    println!("  tool/before round trip, no change           {:>8.1} µs / {:>8.1} µs", unchanged.0, unchanged.1);
    println!("  tool/before round trip, input rewritten     {:>8.1} µs / {:>8.1} µs", rewritten.0, rewritten.1);
    println!("  plugin tool (tool/call of word_count)       {:>8.1} µs / {:>8.1} µs", call.0, call.1);
}

/// Median and 95th percentile of one call, in microseconds.
async fn time<T>(mut f: impl AsyncFnMut() -> T) -> (f64, f64) {
    for _ in 0..WARMUP {
        f().await;
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        std::hint::black_box(f().await);
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    (samples[CALLS / 2], samples[CALLS * 95 / 100])
}
