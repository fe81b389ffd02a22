//! The `keel` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use keel::config::Paths;
use keel::engine::{Engine, Settings};
use keel::rpc;

#[derive(Parser)]
#[command(name = "keel", version, about = "A headless AI coding-agent engine driven over JSON-RPC")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the protocol (stdio unless --listen is given).
    Serve(ServeArgs),
    /// Write the protocol's JSON Schema.
    Schema {
        /// Directory to write `protocol.schema.json` into; stdout when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Serve stdin/stdout (the default).
    #[arg(long, conflicts_with = "listen")]
    stdio: bool,
    /// `unix:PATH` or `tcp:HOST:PORT`.
    #[arg(long)]
    listen: Option<String>,
    /// A file holding the token that clients must send in `initialize.authToken`; required off loopback.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG").unwrap_or_else(|_| "info".into()))
        .with_ansi(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args),
        Command::Schema { out } => schema(out),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("keel: {message}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn env_millis(var: &str, default: u64) -> Duration {
    Duration::from_millis(std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

fn serve(args: ServeArgs) -> Result<ExitCode, String> {
    let paths = Paths::from_env();
    let settings = Settings {
        data_dir: paths.data_dir,
        subscriber_stall: env_millis("KEEL_SUBSCRIBER_STALL_MS", 10_000),
        poll_other_writers: env_millis("KEEL_POLL_MS", 100),
    };
    let listen = args.listen.as_deref().map(parse_listen).transpose()?;
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    if let Some(Listen::Tcp(addr)) = &listen
        && !addr.ip().is_loopback()
        && token.is_none()
    {
        return Err(format!("listening on {addr} is beyond loopback and needs --token-file"));
    }
    let rt = runtime()?;
    rt.block_on(async move {
        let engine = Engine::open(settings).map_err(|e| e.to_string())?;
        engine.start();
        let methods = keel::api::methods(engine).map_err(|e| e.to_string())?;
        let server = Arc::new(rpc::Server::new(methods, token));
        match listen {
            None => {
                let code = rpc::stdio(server).await;
                // stdin is read on a blocking thread that a runtime shutdown would wait for; leave now.
                std::process::exit(code);
            }
            Some(Listen::Unix(path)) => rpc::unix(server, &path).await.map_err(|e| e.to_string())?,
            Some(Listen::Tcp(addr)) => rpc::tcp(server, addr).await.map_err(|e| e.to_string())?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

enum Listen {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

fn parse_listen(spec: &str) -> Result<Listen, String> {
    if let Some(path) = spec.strip_prefix("unix:") {
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    if let Some(addr) = spec.strip_prefix("tcp:") {
        return addr.parse().map(Listen::Tcp).map_err(|e| format!("bad address {addr:?}: {e}"));
    }
    Err(format!("--listen takes unix:PATH or tcp:HOST:PORT, not {spec:?}"))
}

fn schema(out: Option<PathBuf>) -> Result<ExitCode, String> {
    let text = keel::schema_text();
    match out {
        None => print!("{text}"),
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let path = dir.join("protocol.schema.json");
            std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
