//! `cargo bench --bench mcp`: what an MCP tool call adds over a built-in tool, in process (no model, no event log):
//! the built-in `read` against the filesystem server's `read_text_file` over stdio (npm, `tests/mcp`) and the
//! FastMCP server's `echo` over streamable HTTP (PyPI, `tests/mcp/.venv`). Needs what `.ci/run` installs there.
//! Prints, asserts nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel::config::Config;
use keel::mcp::{Manager, Status};
use keel::tool::{Registry, Tool, ToolContext, ToolSource};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WARMUP: usize = 20;
const CALLS: usize = 500;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let mcp_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp");
    let fs_server = mcp_dir.join("node_modules/.bin/mcp-server-filesystem");
    let python = mcp_dir.join(".venv/bin/python");
    assert!(fs_server.exists() && python.exists(), "install tests/mcp first (see .ci/run)");

    let ws = tempfile::tempdir().unwrap();
    let file = ws.path().join("notes.txt");
    std::fs::write(&file, "a small file\n".repeat(20)).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut http = tokio::process::Command::new(&python)
        .arg(mcp_dir.join("http_server.py"))
        .arg(port.to_string())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let config = Config {
        mcp: Some(json!({
            "fs": { "command": [fs_server, ws.path()] },
            "py": { "url": format!("http://127.0.0.1:{port}/mcp") },
        })),
        ..Config::default()
    };
    let manager = Arc::new(Manager::default());
    let started = Instant::now();
    manager.start_configured(&config, ws.path());
    while !manager.list().iter().all(|s| s.status == Status::Ready) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ready = started.elapsed();

    let tools = manager.tools(Some("bench"));
    let tool = |name: &str| tools.iter().find(|t| t.name() == name).cloned().unwrap();
    let builtin = Registry::builtin().get("read").unwrap();
    let ctx = ToolContext {
        session_id: "bench".into(),
        call_id: "c".into(),
        cwd: ws.path().to_owned(),
        output_dir: ws.path().join("out"),
        cancel: CancellationToken::new(),
        sandbox: Arc::default(),
    };

    let read = time(&*builtin, json!({ "filePath": "notes.txt" }), &ctx).await;
    let stdio = time(&*tool("fs_read_text_file"), json!({ "path": file }), &ctx).await;
    let over_http = time(&*tool("py_echo"), json!({ "text": "hi" }), &ctx).await;

    println!("MCP tool call latency, {CALLS} sequential calls after {WARMUP} warm-up ones (median / p95)");
    println!("  config's two servers ready after        {:>8.1} ms", ready.as_secs_f64() * 1e3);
    println!("  built-in read                           {:>8.1} µs / {:>8.1} µs", read.0, read.1);
    println!("  MCP stdio (filesystem, read_text_file)  {:>8.1} µs / {:>8.1} µs", stdio.0, stdio.1);
    println!("  MCP streamable HTTP (FastMCP, echo)     {:>8.1} µs / {:>8.1} µs", over_http.0, over_http.1);
    manager.stop_all();
    let _ = http.kill().await;
}

/// Median and 95th percentile of one call, in microseconds.
async fn time(tool: &dyn Tool, input: Value, ctx: &ToolContext) -> (f64, f64) {
    for _ in 0..WARMUP {
        tool.run(input.clone(), ctx.clone()).await.unwrap();
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        std::hint::black_box(tool.run(input.clone(), ctx.clone()).await.unwrap());
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    (samples[CALLS / 2], samples[CALLS * 95 / 100])
}
