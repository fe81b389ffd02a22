//! The `keel` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use keel::cli::run::{Approve, Format, RunOptions};
use keel::cli::{admin, run};
use keel::config::Paths;
use keel::engine::{Engine, Settings};
use keel::rpc;
use keel_protocol::session::ReasoningEffort;

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
    /// Speak the Agent Client Protocol on stdio (for Zed, JetBrains, Neovim and Emacs ACP clients).
    Acp,
    /// Prompt a session once and stream the answer; exits 0 only when the activity completed.
    Run(RunArgs),
    /// Write the protocol's and the config's JSON Schemas.
    Schema {
        /// Directory to write `protocol.schema.json` and `config.schema.json` into; stdout when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Credentials in the auth store (keys are read from stdin).
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// The model database.
    Models {
        #[arg(long)]
        provider: Option<String>,
        /// Refresh the model database from a models.dev-format JSON file (https://models.dev/api.json), stored
        /// under keel's home and used from the next start (a running engine reloads it).
        #[arg(long, value_name = "FILE", conflicts_with = "provider")]
        import: Option<PathBuf>,
    },
    /// Config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Stored sessions.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Check config files, providers and keys, the default model, MCP servers and the database; prints a table for
    /// bug reports and exits 1 when something is wrong.
    Doctor {
        /// The directory whose project config is checked (default: the current directory).
        #[arg(short = 'C', long)]
        cwd: Option<PathBuf>,
    },
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Serve stdin/stdout (the default).
    #[arg(long, conflicts_with = "listen")]
    stdio: bool,
    /// `unix:PATH`, `tcp:HOST:PORT` or `ws://HOST:PORT`.
    #[arg(long)]
    listen: Option<String>,
    /// A file holding the token that clients must send in `initialize.authToken` (on WebSocket: `Authorization:
    /// Bearer` or `?token=` in the upgrade); required off loopback.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// A browser origin (`https://host:port`) allowed to open WebSocket connections besides loopback pages;
    /// repeatable.
    #[arg(long = "allow-origin", requires = "listen")]
    allow_origins: Vec<String>,
    /// Where sessions are stored: `postgres://user@host/db` for a database several engines share, or a SQLite
    /// file (default: `keel.db` under keel's home; also `KEEL_STORE` or `store.url` in the global config).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The model, `provider/model` (default: the config's `model`).
    #[arg(short, long)]
    model: Option<String>,
    /// The agent whose settings apply (default: `build`).
    #[arg(long)]
    agent: Option<String>,
    /// How hard a reasoning model thinks: `minimal`, `low`, `medium`, `high` (default: the agent's or config's
    /// `reasoningEffort`); kept for the session.
    #[arg(short, long, value_parser = parse_effort)]
    effort: Option<ReasoningEffort>,
    /// The workspace of a new session (default: the current directory).
    #[arg(short = 'C', long)]
    cwd: Option<PathBuf>,
    /// Continue this session instead of creating one.
    #[arg(short, long, conflicts_with = "continue_last")]
    session: Option<String>,
    /// Continue the most recent session of this directory.
    #[arg(short = 'c', long = "continue")]
    continue_last: bool,
    /// What to do when a tool needs approval.
    #[arg(long, value_enum, default_value = "reject")]
    approve: Approve,
    /// `text` for people, `json` for one event per line.
    #[arg(short, long, value_enum, default_value = "text")]
    format: Format,
    /// Print only the final answer, nothing else.
    #[arg(short, long)]
    quiet: bool,
    /// The prompt; `-` or nothing reads it from stdin.
    #[arg(trailing_var_arg = true)]
    prompt: Vec<String>,
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Store a key for a provider, read from stdin.
    Set {
        provider: String,
    },
    List,
    Remove {
        provider: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Convert an opencode (`opencode.json(c)`) or codex (`~/.codex/config.toml`) config into keel's, printing
    /// what was mapped and what was not, then the converted config.
    Import {
        /// Which tool's config (default: codex for a `.toml` file, else opencode).
        #[arg(long, value_enum)]
        from: Option<ImportFrom>,
        /// The file (default: the tool's usual place).
        file: Option<PathBuf>,
        /// Also write each converted top-level key into the global config (comments kept, validated first).
        #[arg(long)]
        write: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ImportFrom {
    Opencode,
    Codex,
}

#[derive(Subcommand)]
enum SessionsCommand {
    List,
    Show {
        id: String,
    },
    Events {
        id: String,
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long)]
        follow: bool,
    },
}

/// rmcp reports every MCP session it opens at `info`; keel reports what matters about its servers itself.
const DEFAULT_LOG: &str = "info,rmcp=warn";

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    // SAFETY: the first statement of `main`: no other thread exists yet.
    unsafe {
        keel::secret::hide_environment();
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG").unwrap_or_else(|_| DEFAULT_LOG.into()))
        .with_ansi(false)
        .init();
    let cli = Cli::parse();
    keel::secret::remember_environment();
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_DUMPABLE takes a plain integer and changes no memory. A non-dumpable process's /proc files
    // (its environment, where provider keys live) are closed to other processes of the same user.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
    }
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    if !matches!(command, Command::Serve(_) | Command::Acp) {
        // `keel models | head -1`: a reader that goes away ends a printing command quietly, as it does `ls`.
        // The servers keep ignoring SIGPIPE: a client that hangs up must not cut their durable work short.
        // SAFETY: restoring a signal's default disposition touches no memory.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if matches!(command, Command::Serve(_) | Command::Run(_) | Command::Acp) {
        import_on_first_start();
    }
    let result = match command {
        Command::Serve(args) => serve(args),
        Command::Run(args) => run_once(args),
        Command::Acp => acp(),
        Command::Schema { out } => schema(out),
        Command::Auth { command } => with_engine(|engine| async move {
            match command {
                AuthCommand::Set { provider } => admin::auth_set(&engine, &provider, None),
                AuthCommand::List => admin::auth_list(&engine),
                AuthCommand::Remove { provider } => admin::auth_remove(&engine, &provider),
            }
        }),
        Command::Models { import: Some(file), .. } => {
            with_engine(|engine| async move { admin::models_import(&engine, &file) })
        }
        Command::Models { provider, import: None } => {
            with_engine(|engine| async move { admin::models(&engine, provider.as_deref()) })
        }
        Command::Config { command: ConfigCommand::Import { from, file, write } } => {
            let from = from.map(|f| match f {
                ImportFrom::Opencode => keel::config::import::Source::Opencode,
                ImportFrom::Codex => keel::config::import::Source::Codex,
            });
            admin::config_import(&Paths::from_env(), from, file.as_deref(), write).map(|()| ExitCode::SUCCESS)
        }
        Command::Doctor { cwd } => doctor(cwd),
        Command::Sessions { command } => with_engine(|engine| async move {
            match command {
                SessionsCommand::List => admin::sessions_list(&engine),
                SessionsCommand::Show { id } => admin::session_show(&engine, &id),
                SessionsCommand::Events { id, after, follow } => {
                    admin::session_events(engine, &id, after, follow).await
                }
            }
        }),
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

fn env_millis(var: &str, default: Duration) -> Duration {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).map_or(default, Duration::from_millis)
}

fn env_number(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Engine settings: the environment over the global config's `recovery` section over the defaults.
fn settings(paths: &Paths) -> Settings {
    let defaults = Settings::default();
    // A broken config file is reported when a session reads it; here its absence of settings is enough.
    let global = keel::config::load(paths, None).ok().map(|l| l.config);
    let recovery = global.as_ref().and_then(|c| c.recovery.clone()).unwrap_or_default();
    let store = std::env::var("KEEL_STORE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| global.and_then(|c| c.store).and_then(|s| s.url));
    Settings {
        subscriber_stall: env_millis("KEEL_SUBSCRIBER_STALL_MS", defaults.subscriber_stall),
        poll_other_writers: env_millis("KEEL_POLL_MS", defaults.poll_other_writers),
        retry_base: env_millis("KEEL_RETRY_BASE_MS", defaults.retry_base),
        max_subscriptions_per_connection: env_number(
            "KEEL_MAX_SUBSCRIPTIONS",
            defaults.max_subscriptions_per_connection,
        ),
        lease_ttl: env_millis("KEEL_LEASE_MS", configured(recovery.lease_ms, defaults.lease_ttl)),
        // A zero period would stop the renewal timer; a millisecond is the floor.
        lease_renew: env_millis("KEEL_LEASE_RENEW_MS", configured(recovery.lease_renew_ms, defaults.lease_renew))
            .max(Duration::from_millis(1)),
        shutdown_grace: env_millis(
            "KEEL_SHUTDOWN_GRACE_MS",
            configured(recovery.shutdown_grace_ms, defaults.shutdown_grace),
        ),
        store,
        ..defaults
    }
}

fn configured(millis: Option<u64>, default: Duration) -> Duration {
    millis.map_or(default, Duration::from_millis)
}

fn open_engine() -> Result<Arc<Engine>, String> {
    let paths = Paths::from_env();
    let settings = settings(&paths);
    Engine::open(paths, settings).map_err(|e| e.to_string())
}

/// Serves until `serving` ends or SIGTERM/SIGINT arrives (then the result is `on_signal`), and suspends running
/// activities within the shutdown grace, giving their leases back so that the next engine resumes them.
async fn until_signal<T>(engine: &Engine, serving: impl Future<Output = T>, on_signal: T) -> T {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        let served = serving.await;
        engine.shutdown().await;
        return served;
    };
    let served = tokio::select! {
        served = serving => served,
        _ = term.recv() => on_signal,
        _ = int.recv() => on_signal,
    };
    engine.shutdown().await;
    served
}

fn with_engine<F, Fut>(f: F) -> Result<ExitCode, String>
where
    F: FnOnce(Arc<Engine>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let rt = runtime()?;
    rt.block_on(async move {
        let engine = open_engine()?;
        f(engine).await.map(|()| ExitCode::SUCCESS)
    })
}

fn run_once(args: RunArgs) -> Result<ExitCode, String> {
    let rt = runtime()?;
    rt.block_on(async move {
        let paths = Paths::from_env();
        // A one-shot run drives its own session only; sessions that nobody runs are for serving engines.
        let settings = Settings { discover: false, list_models: false, watch_config: false, ..settings(&paths) };
        let engine = Engine::open(paths, settings).map_err(|e| e.to_string())?;
        engine.start();
        let _plugins = plugin_server(&engine)?;
        let prompt = if args.prompt.is_empty() || args.prompt == ["-"] {
            let mut prompt = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut prompt)
                .map_err(|e| format!("cannot read the prompt from stdin: {e}"))?;
            prompt
        } else {
            args.prompt.join(" ")
        };
        let options = RunOptions {
            model: args.model,
            agent: args.agent,
            effort: args.effort,
            cwd: args.cwd,
            session: args.session,
            continue_last: args.continue_last,
            approve: args.approve,
            format: args.format,
            quiet: args.quiet,
            prompt,
        };
        match run::run(engine, options).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                eprintln!("keel: {e}");
                // 2: nothing ran because the command or the config is wrong; 3: it completed but tool calls were
                // refused; 130: Ctrl-C interrupted it; 1: it ran and did not succeed.
                let code = match e {
                    run::RunError::Usage(_) | run::RunError::Config(_) => 2,
                    run::RunError::Refused(_) => 3,
                    run::RunError::Interrupted => 130,
                    _ => 1,
                };
                Ok(ExitCode::from(code))
            }
        }
    })
}

fn plugin_server(engine: &Arc<Engine>) -> Result<Arc<rpc::Server>, String> {
    keel::api::start_plugins(engine, &std::env::current_dir().unwrap_or_default()).map_err(|e| e.to_string())
}

fn doctor(cwd: Option<PathBuf>) -> Result<ExitCode, String> {
    let rt = runtime()?;
    rt.block_on(async move {
        let paths = Paths::from_env();
        let cwd = match cwd {
            Some(cwd) => cwd,
            None => std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?,
        };
        let report = keel::cli::doctor::doctor(&paths, settings(&paths), &cwd).await;
        print!("{}", report.render());
        Ok(if report.problems() == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}

/// Told on stderr, once: the user should know where their settings came from.
fn import_on_first_start() {
    match keel::config::first_start::import_on_first_start(&Paths::from_env()) {
        Ok(Some(i)) => eprintln!(
            "keel: first start: imported {} into {} ({} settings carried over, {} not; its header lists them)",
            i.from.display(),
            i.written.display(),
            i.mapped,
            i.unmapped
        ),
        Ok(None) => {}
        Err(e) => eprintln!("keel: first start: nothing imported: {e}"),
    }
}

fn acp() -> Result<ExitCode, String> {
    let rt = runtime()?;
    rt.block_on(async move {
        let engine = open_engine()?;
        engine.start();
        let _plugins = plugin_server(&engine)?;
        let methods = keel::acp::methods(Arc::clone(&engine)).map_err(|e| e.to_string())?;
        let server = rpc::Server::new(methods, None)
            .with_ordering(keel::acp::ordering())
            .with_cancel_notice(rpc::CancelNotice::Acp);
        let code = until_signal(&engine, rpc::stdio(Arc::new(server)), 0).await;
        // As for `serve`: stdin's blocking reader would hold up a runtime shutdown.
        std::process::exit(code);
    })
}

fn serve(args: ServeArgs) -> Result<ExitCode, String> {
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
    if let Some(Listen::Tcp(addr) | Listen::Ws(addr)) = &listen
        && !addr.ip().is_loopback()
        && token.is_none()
    {
        return Err(format!("listening on {addr} is beyond loopback and needs --token-file"));
    }
    let rt = runtime()?;
    rt.block_on(async move {
        let paths = Paths::from_env();
        let defaults = settings(&paths);
        let store = args.store.or(defaults.store.clone());
        let settings = Settings { suspend_on_shutdown_request: listen.is_none(), store, ..defaults };
        let engine = Engine::open(paths, settings).map_err(|e| e.to_string())?;
        engine.start();
        let methods = keel::api::methods(Arc::clone(&engine)).map_err(|e| e.to_string())?;
        let max_connections = env_number("KEEL_MAX_CONNECTIONS", rpc::DEFAULT_MAX_CONNECTIONS);
        let server =
            rpc::Server::new(methods, token).with_ordering(keel::api::ordering()).with_max_connections(max_connections);
        let server = Arc::new(server);
        let _plugins = plugin_server(&engine)?;
        match listen {
            None => {
                let code = until_signal(&engine, rpc::stdio(server), 0).await;
                // stdin is read on a blocking thread that a runtime shutdown would wait for; leave now.
                std::process::exit(code);
            }
            Some(listen) => {
                let serving = async {
                    match listen {
                        Listen::Unix(path) => rpc::unix(server, &path).await,
                        Listen::Tcp(addr) => rpc::tcp(server, addr).await,
                        Listen::Ws(addr) => {
                            rpc::websocket(server, addr, rpc::OriginPolicy { allowed: args.allow_origins }).await
                        }
                    }
                };
                until_signal(&engine, serving, Ok(())).await.map_err(|e| e.to_string())?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

enum Listen {
    Unix(PathBuf),
    Tcp(SocketAddr),
    Ws(SocketAddr),
}

fn parse_listen(spec: &str) -> Result<Listen, String> {
    if let Some(path) = spec.strip_prefix("unix:") {
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    if let Some(addr) = spec.strip_prefix("tcp:") {
        return addr.parse().map(Listen::Tcp).map_err(|e| format!("bad address {addr:?}: {e}"));
    }
    if let Some(addr) = spec.strip_prefix("ws://") {
        let addr = addr.strip_suffix('/').unwrap_or(addr);
        return addr.parse().map(Listen::Ws).map_err(|e| format!("bad address {addr:?}: {e}"));
    }
    Err(format!("--listen takes unix:PATH, tcp:HOST:PORT or ws://HOST:PORT, not {spec:?}"))
}

fn schema(out: Option<PathBuf>) -> Result<ExitCode, String> {
    let protocol = keel::schema_text();
    let config = keel::config_schema_text();
    match out {
        None => print!("{protocol}"),
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            for (name, text) in [("protocol.schema.json", protocol), ("config.schema.json", config)] {
                let path = dir.join(name);
                std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_effort(value: &str) -> Result<ReasoningEffort, String> {
    ReasoningEffort::ALL
        .into_iter()
        .find(|e| !e.is_default() && e.as_str() == value)
        .ok_or_else(|| format!("{value:?} is not an effort: minimal, low, medium or high"))
}
