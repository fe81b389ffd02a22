//! `keel run`: the one-shot driver for scripts and CI. It runs the engine in-process, prompts one session, streams
//! the answer and exits 0 only when the activity completed.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use keel_protocol::approval::Resolved;
use keel_protocol::catalogue::EventBody;
use keel_protocol::input::{ContentPart, Delivery, InputKind};
use keel_protocol::session::ReasoningEffort;
use keel_protocol::turn::{CloseReason, DeltaKind};

use crate::engine::Engine;
use crate::provider::registry::{FALLBACK_MODEL, Registry};
use crate::session::inbox::NewInput;
use crate::session::prompt::Step;
use crate::session::service::{NewSession, SessionChanges};
use crate::session::usage::ContextFigures;
use crate::session::{Delta, Error as SessionError};
use crate::store::approvals::ApprovalRow;
use crate::store::{Event, SessionFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Approve {
    Ask,
    Allow,
    Reject,
}

pub struct RunOptions {
    pub model: Option<String>,
    pub agent: Option<String>,
    /// The session's reasoning effort from this prompt on.
    pub effort: Option<ReasoningEffort>,
    pub cwd: Option<PathBuf>,
    pub session: Option<String>,
    /// Continue the most recently updated session of the working directory.
    pub continue_last: bool,
    pub approve: Approve,
    pub format: Format,
    /// Only the final answer on stdout, nothing on stderr but errors.
    pub quiet: bool,
    pub prompt: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("{0}")]
    Store(#[from] crate::store::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Config(String),
    #[error("no model is configured: the answer above came from the offline scripted provider")]
    NoModel,
    #[error("the activity completed, but {0} tool call(s) were refused")]
    Refused(usize),
    #[error("the activity ended {reason}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    NotCompleted { reason: String, detail: Option<String> },
    #[error("interrupted")]
    Interrupted,
}

/// The first Ctrl-C interrupts the session's activity, which then closes as `interrupted` and is printed like any
/// other end (the log records it, tools are stopped); a second one leaves at once. True once the first came.
fn on_ctrl_c(engine: Arc<Engine>, session_id: String) -> Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut sigint) = signal(SignalKind::interrupt()) else { return };
        if sigint.recv().await.is_none() {
            return;
        }
        flag.store(true, Ordering::Release);
        eprintln!("\nkeel: interrupting (Ctrl-C again to leave at once)");
        engine.interrupt(&session_id);
        if sigint.recv().await.is_some() {
            std::process::exit(130);
        }
    });
    interrupted
}

/// Runs one prompt to the end of its activity.
pub async fn run(engine: Arc<Engine>, options: RunOptions) -> Result<(), RunError> {
    if options.prompt.trim().is_empty() {
        return Err(RunError::Usage("nothing to ask: give a prompt".into()));
    }
    let cwd = match &options.cwd {
        Some(cwd) => cwd.clone(),
        None => std::env::current_dir().map_err(|e| RunError::Usage(format!("no working directory: {e}")))?,
    };
    let cwd = std::fs::canonicalize(&cwd).map_err(|e| RunError::Usage(format!("{}: {e}", cwd.display())))?;
    let cwd = cwd.display().to_string();
    let session = match (&options.session, options.continue_last) {
        (Some(id), _) => Some(id.clone()),
        (None, true) => {
            let latest = engine
                .sessions
                .list(&SessionFilter { cwd: Some(&cwd), parent_id: None, roots: true }, None, 1)?
                .sessions
                .into_iter()
                .next();
            Some(latest.ok_or_else(|| RunError::Usage(format!("no session to continue in {cwd}")))?.id)
        }
        (None, false) => None,
    };
    let session_id = match &session {
        Some(id) => {
            let session = engine.sessions.get(id)?;
            if let Some(model) = &options.model {
                check_model(&engine, &session.cwd, model)?;
            }
            session.id
        }
        None => {
            engine.load_config(Some(&cwd)).map_err(|e| RunError::Config(e.to_string()))?;
            if let Some(model) = &options.model {
                check_model(&engine, &cwd, model)?;
            }
            let title: String = options.prompt.chars().take(60).collect();
            engine
                .sessions
                .create(NewSession {
                    cwd,
                    title: Some(title),
                    agent: options.agent.clone(),
                    model: options.model.clone(),
                    parent_id: None,
                })?
                .id
        }
    };
    if let Some(effort) = options.effort {
        engine.sessions.update(&session_id, SessionChanges { reasoning_effort: Some(effort), ..Default::default() })?;
    }
    let session = engine.sessions.get(&session_id)?;
    // A broken config is an error a script must see, not a silent fall back to the offline provider.
    let config = engine.load_config(Some(&session.cwd)).map_err(|e| RunError::Config(e.to_string()))?;
    let model = options.model.clone().filter(|m| !m.is_empty()).or_else(|| Some(session.model.clone()));
    let model = model.filter(|m| !m.is_empty()).unwrap_or_else(|| Registry::default_model(&config));
    // The scripted provider answers when nothing else is configured; that is a success only when asked for.
    let offline_by_default = model == FALLBACK_MODEL && std::env::var_os("KEEL_SCRIPT").is_none();
    // An approval can reach us twice (still pending from before, and announced again): it is asked once.
    let mut asked = std::collections::HashSet::new();
    for row in engine.pending_approvals(&session_id)? {
        if asked.insert(row.approval_id.clone()) {
            answer(&engine, row, options.approve);
        }
    }
    // `keel run "/review focus on the parser"` runs a slash command; unknown names are sent as written.
    let command = match crate::agent::commands::parse_invocation(&options.prompt) {
        Some((name, arguments)) => {
            crate::api::agent::command_input(&engine, &session.cwd, Some(&session.id), name, arguments).await.ok()
        }
        None => None,
    };
    let input = match command {
        Some(mut input) => {
            input.agent = options.agent.clone().or(input.agent);
            input.model = options.model.clone().or(input.model);
            input
        }
        None => NewInput {
            input_id: None,
            delivery: Delivery::Queue,
            input: vec![ContentPart::Text { text: options.prompt.clone() }],
            agent: options.agent.clone(),
            model: options.model.clone(),
            kind: InputKind::Prompt,
        },
    };
    let created = options.session.is_none() && !options.continue_last;
    let mut run = engine.prompt(&session_id, input)?;
    if options.format == Format::Json && !options.quiet && created {
        // A new session's JSON starts at its beginning: `session.created` first.
        for event in engine.events(&session_id, 0, 64)?.iter().filter(|e| e.seq <= run.cursor()) {
            println!("{}", crate::api::event_line(event));
        }
    }
    if options.format == Format::Text && !options.quiet {
        eprintln!("session {session_id}");
    }
    let mut printer = Printer {
        format: options.format,
        quiet: options.quiet,
        last_text: String::new(),
        printed: Default::default(),
        completed: Default::default(),
        ended_line: true,
    };
    let mut tally = Tally::default();
    let interrupted = on_ctrl_c(Arc::clone(&engine), session_id.clone());
    loop {
        match run.next().await? {
            Step::Event { event, body, ours } => {
                if ours {
                    tally.count(&body);
                }
                printer.event(&event, &body, ours)
            }
            Step::Delta(delta) => printer.delta(&delta),
            Step::Approval(row) => {
                if asked.insert(row.approval_id.clone()) {
                    answer(&engine, row, options.approve);
                }
            }
            Step::ApprovalResolved(_) | Step::PausedBeforeStart => {}
            Step::Closed(outcome) => {
                if options.quiet {
                    let answer = std::mem::take(&mut printer.last_text);
                    printer.out(answer.trim_end());
                    printer.out("\n");
                } else if options.format == Format::Text && !printer.ended_line {
                    printer.out("\n");
                }
                let result = match outcome.reason {
                    CloseReason::Interrupted if interrupted.load(std::sync::atomic::Ordering::Acquire) => {
                        Err(RunError::Interrupted)
                    }
                    CloseReason::Completed if offline_by_default => Err(RunError::NoModel),
                    CloseReason::Completed if tally.refused > 0 => Err(RunError::Refused(tally.refused)),
                    CloseReason::Completed => Ok(()),
                    other => {
                        Err(RunError::NotCompleted { reason: keel_protocol::wire_name(&other), detail: outcome.error })
                    }
                };
                if options.format == Format::Text
                    && !options.quiet
                    && tally.turns > 0
                    && let Ok(row) = engine.sessions.get(&session_id)
                {
                    let context = engine.context_figures(&row).unwrap_or_default();
                    eprintln!("{}", tally.figures(&context));
                }
                if options.format == Format::Json && !options.quiet {
                    let summary = serde_json::json!({
                        "type": "summary",
                        "sessionId": session_id,
                        "reason": keel_protocol::wire_name(&outcome.reason),
                        "turns": tally.turns,
                        "refused": tally.refused,
                        "costUsd": tally.cost_usd,
                        "error": result.as_ref().err().map(ToString::to_string),
                    });
                    println!("{summary}");
                }
                return result;
            }
        }
    }
}

/// What the activity did, for the closing summary.
#[derive(Default)]
struct Tally {
    turns: usize,
    refused: usize,
    cost_usd: f64,
    input_tokens: u64,
    output_tokens: u64,
}

impl Tally {
    fn count(&mut self, body: &EventBody) {
        match body {
            EventBody::TurnCompleted(d) => {
                self.turns += 1;
                self.cost_usd += d.cost_usd;
                let u = &d.usage;
                self.input_tokens += u.input_tokens + u.cache_read_tokens + u.cache_write_tokens;
                self.output_tokens += u.output_tokens + u.reasoning_tokens;
            }
            EventBody::CompactionCompleted(d) => {
                if let Some(u) = &d.usage {
                    self.cost_usd += u.cost_usd;
                    self.input_tokens += u.input_tokens + u.cache_read_tokens + u.cache_write_tokens;
                    self.output_tokens += u.output_tokens + u.reasoning_tokens;
                }
            }
            EventBody::ApprovalResolved(d) if d.decision == Resolved::Reject => self.refused += 1,
            EventBody::ToolFailed(d) if d.error.starts_with(crate::session::approval::DENIED_BY_RULES) => {
                self.refused += 1
            }
            _ => {}
        }
    }
}

impl Tally {
    /// One line for the end of a text run: `3 turns · 1.2k in, 340 out · context 5.1k of 128k (4%) · $0.0021`.
    fn figures(&self, context: &ContextFigures) -> String {
        let turns = if self.turns == 1 { "1 turn".to_owned() } else { format!("{} turns", self.turns) };
        let mut line = format!("{turns} · {} in, {} out", thousands(self.input_tokens), thousands(self.output_tokens));
        if context.window > 0 {
            let percent = (context.share() * 100.0).round();
            line.push_str(&format!(
                " · context {} of {} ({percent}%)",
                thousands(context.tokens),
                thousands(context.window)
            ));
        }
        line.push_str(&format!(" · ${:.4}", self.cost_usd));
        line
    }
}

/// `950`, `12.3k`, `128k`, `1.5M`.
fn thousands(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..100_000 => format!("{:.1}k", n as f64 / 1_000.0),
        100_000..1_000_000 => format!("{:.0}k", n as f64 / 1_000.0),
        _ => format!("{:.1}M", n as f64 / 1_000_000.0),
    }
}

/// Asks on stderr and reads stdin until the answer is one of the choices; end of input rejects.
fn ask_at_the_terminal(title: &str) -> (Resolved, Option<String>) {
    eprint!("approve? {title}\n  [o]nce, [a]lways, [r]eject: ");
    loop {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => return (Resolved::Reject, Some("no answer at the terminal".to_owned())),
            Ok(_) => {}
        }
        match line.trim() {
            "o" | "once" | "y" | "yes" => return (Resolved::Once, None),
            "a" | "always" => return (Resolved::Always, None),
            "r" | "reject" | "n" | "no" => return (Resolved::Reject, Some("rejected at the terminal".to_owned())),
            _ => eprint!("  please answer o, a or r: "),
        }
    }
}

/// Answers an approval as `--approve` says: always allow, always reject, or ask on the terminal.
fn answer(engine: &Arc<Engine>, row: ApprovalRow, policy: Approve) {
    let engine = Arc::clone(engine);
    tokio::spawn(async move {
        let (decision, message) = match policy {
            Approve::Allow => (Resolved::Once, None),
            Approve::Reject => (Resolved::Reject, Some("keel run was started with --approve reject".to_owned())),
            Approve::Ask => {
                let title = row.title.clone();
                let typed = tokio::task::spawn_blocking(move || ask_at_the_terminal(&title)).await;
                typed.unwrap_or((Resolved::Reject, Some("rejected at the terminal".to_owned())))
            }
        };
        let _ = engine.answer_approval(&row.approval_id, decision, message, "keel run");
    });
}

fn check_model(engine: &Engine, cwd: &str, model: &str) -> Result<(), RunError> {
    engine.check_model(Some(cwd), model).map_err(|e| RunError::Usage(e.to_string()))
}

struct Printer {
    format: Format,
    /// `-q`: nothing streams; the last text part is printed when the activity closes.
    quiet: bool,
    last_text: String,
    /// Bytes of each text part already written from deltas.
    printed: std::collections::HashMap<String, usize>,
    /// Parts written whole: a delta arriving after its part's event is dropped.
    completed: std::collections::HashSet<String>,
    ended_line: bool,
}

impl Printer {
    /// A fragment of the prompt's activity: text goes out as it streams.
    fn delta(&mut self, delta: &Delta) {
        if self.quiet
            || self.format != Format::Text
            || delta.kind != DeltaKind::Text
            || self.completed.contains(&delta.part_id)
        {
            return;
        }
        *self.printed.entry(delta.part_id.clone()).or_default() += delta.text.len();
        self.out(&delta.text);
    }

    fn out(&mut self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        if !text.is_empty() {
            self.ended_line = text.ends_with('\n');
        }
    }

    /// Prints one event: every one as JSON, or the prompt's activity as text.
    fn event(&mut self, event: &Event, body: &EventBody, ours: bool) {
        if self.quiet {
            if let (true, EventBody::TextCompleted(d)) = (ours, body) {
                self.last_text = d.text.clone();
            }
        } else if self.format == Format::Json {
            println!("{}", crate::api::event_line(event));
        } else if ours {
            self.text_event(body);
        }
    }

    fn text_event(&mut self, body: &EventBody) {
        match body {
            EventBody::TextCompleted(d) => {
                self.completed.insert(d.part_id.clone());
                let printed = self.printed.get(&d.part_id).copied().unwrap_or(0);
                let rest = d.text.get(printed..).unwrap_or_default().to_owned();
                self.out(&rest);
                if !self.ended_line {
                    self.out("\n");
                }
            }
            EventBody::ToolCalled(d) => eprintln!("→ {} {}", d.tool, d.input),
            EventBody::ToolCompleted(d) => {
                let first = d.output.lines().next().unwrap_or_default();
                eprintln!("  ✓ {first}");
            }
            EventBody::ToolFailed(d) => eprintln!("  ✗ {}", d.error),
            EventBody::SubagentStarted(d) => {
                eprintln!("  ↳ {} subagent: {} (session {})", d.agent, d.description, d.child_session_id)
            }
            EventBody::JobStarted(d) => eprintln!("  ⧗ background job {}: {}", d.job_id, d.command),
            EventBody::JobCompleted(d) => {
                let code = d.exit_code.map_or_else(|| "a signal".to_owned(), |c| c.to_string());
                eprintln!("  ⧗ job {} exited with {code}", d.job_id)
            }
            EventBody::JobFailed(d) => eprintln!("  ⧗ job {} failed: {}", d.job_id, d.error),
            EventBody::JobCancelled(d) => eprintln!("  ⧗ job {} cancelled", d.job_id),
            EventBody::ShellStarted(d) => eprintln!("$ {}", d.command),
            EventBody::SkillLoaded(d) => eprintln!("  ✦ skill {}", d.name),
            EventBody::PluginActed(d) => eprintln!("  ⚙ plugin {}: {}", d.plugin, d.change),
            EventBody::PluginFailed(d) => {
                eprintln!("  ⚙ plugin {} failed in {}: {}", d.plugin, keel_protocol::wire_name(&d.hook), d.error)
            }
            EventBody::SubagentCompleted(d) => {
                eprintln!("  ↳ subagent {}: {}", d.child_session_id, keel_protocol::wire_name(&d.reason))
            }
            EventBody::TurnFailed(d) => eprintln!("turn failed: {}", d.error.message),
            EventBody::RetryScheduled(d) => eprintln!(
                "retrying in {:.1} s (attempt {}): {}",
                d.delay_ms as f64 / 1000.0,
                d.attempt,
                d.error.message
            ),
            EventBody::TurnCompleted(d) if d.was_cut() => {
                eprintln!("keel: the answer was cut off: the model reached its output limit")
            }
            EventBody::ApprovalRequested(d) => eprintln!("? {}", d.title),
            EventBody::RecoveryRequired(d) => {
                eprintln!("keel: {}; decide with recovery/decide (retry or abandon)", d.message)
            }
            EventBody::ActivityResumed(_) => eprintln!("keel: resuming where the engine stopped"),
            EventBody::CompactionStarted(d) => {
                eprintln!("keel: compacting the context ({})", keel_protocol::wire_name(&d.reason))
            }
            EventBody::CompactionCompleted(d) => {
                eprintln!("keel: context compacted from ~{} to ~{} tokens", d.tokens_before, d.tokens_after)
            }
            EventBody::CompactionFailed(d) => eprintln!("keel: compaction failed: {}", d.error),
            // The terminal shows the answer and the tools; the rest is bookkeeping.
            EventBody::SessionCreated(_)
            | EventBody::ShellCompleted(_)
            | EventBody::SessionUpdated(_)
            | EventBody::SessionDeleted(_)
            | EventBody::SessionStatus(_)
            | EventBody::InputAdmitted(_)
            | EventBody::InputRemoved(_)
            | EventBody::InputPromoted(_)
            | EventBody::ActivityOpened(_)
            | EventBody::ActivityClosed(_)
            | EventBody::QueuePaused(_)
            | EventBody::QueueResumed(_)
            | EventBody::TurnStarted(_)
            | EventBody::TurnCompleted(_)
            | EventBody::ReasoningCompleted(_)
            | EventBody::ToolStarted(_)
            | EventBody::ApprovalResolved(_)
            | EventBody::TurnDispatched(_)
            | EventBody::TurnStreamed(_)
            | EventBody::ActivitySuspended(_)
            | EventBody::RecoveryResolved(_) => {}
        }
    }
}
