//! The in-process harness: the engine as a library, the offline scripted provider, and `check`, which runs one
//! prompt to the end of its activity and compares the session's event log, printed compactly, with an
//! `expect![[...]]` snapshot. A new runner behaviour is one data-driven test of a few lines; `UPDATE_EXPECT=1`
//! rewrites the snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use expect_test::Expect;
use keel::config::Paths;
use keel::engine::{Engine, Settings};
use keel::session::inbox::NewInput;
use keel::session::prompt::Step;
use keel::session::service::NewSession;
use keel_protocol::approval::Decision;
use keel_protocol::catalogue::EventBody;
use keel_protocol::input::{ContentPart, Delivery, InputKind};
use serde::Deserialize;
use serde_json::Value;

/// What a check runs: the model's script, the prompt, and how the "user" behaves meanwhile.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Case {
    /// The prompt; "go" when absent.
    #[serde(default)]
    pub prompt: Option<String>,
    /// One entry per provider request, in the scripted provider's format.
    pub turns: Vec<Value>,
    /// How every approval is answered: `once`, `always` or `reject`. Without it approvals are never answered.
    #[serde(default)]
    pub approve: Option<Decision>,
    /// Steers with this text as soon as the first turn starts.
    #[serde(default)]
    pub steer: Option<String>,
    /// Interrupts the session as soon as the first turn starts.
    #[serde(default)]
    pub interrupt: bool,
    /// Extra config merged over the harness's own (`permissions`, `agents`, ...).
    #[serde(default)]
    pub config: Option<Value>,
}

pub struct Harness {
    pub home: tempfile::TempDir,
    pub workspace: PathBuf,
    pub engine: Arc<Engine>,
}

impl Harness {
    pub fn new(case: &Case) -> Self {
        let home = tempfile::tempdir().unwrap();
        let workspace = home.path().join("ws");
        std::fs::create_dir_all(&workspace).unwrap();
        let script = home.path().join("script.json");
        std::fs::write(&script, serde_json::json!({ "turns": case.turns }).to_string()).unwrap();
        let mut config = serde_json::json!({
            "model": "play/script",
            "providers": { "play": { "wire": "scripted", "script": script } },
        });
        if let Some(Value::Object(extra)) = &case.config {
            for (key, value) in extra {
                config[key] = value.clone();
            }
        }
        std::fs::write(home.path().join("config.jsonc"), config.to_string()).unwrap();
        let paths = Paths { config_dir: home.path().to_owned(), data_dir: home.path().to_owned() };
        let settings = Settings { retry_base: Duration::from_millis(5), max_retries: 1, ..Settings::default() };
        let engine = Engine::open(paths, settings).unwrap();
        Self { home, workspace, engine }
    }

    pub fn session(&self) -> String {
        let cwd = self.workspace.canonicalize().unwrap().display().to_string();
        let new = NewSession { cwd, title: Some("check".into()), agent: None, model: None, parent_id: None };
        self.engine.sessions.create(new).unwrap().id
    }

    /// Runs the case's prompt until its activity closes, answering and steering as the case says; the session's
    /// whole log, printed, and the session's id.
    pub async fn run(&self, case: &Case) -> (String, String) {
        let session_id = self.session();
        let text = case.prompt.clone().unwrap_or_else(|| "go".into());
        let mut run = self.engine.prompt(&session_id, input(Delivery::Queue, text)).unwrap();
        let mut steer = case.steer.clone();
        let mut interrupt = case.interrupt;
        let outcome = loop {
            let step = tokio::time::timeout(Duration::from_secs(20), run.next()).await.unwrap().unwrap();
            match step {
                Step::Event { body: EventBody::TurnStarted(_), .. } if steer.is_some() => {
                    let text = steer.take().unwrap_or_default();
                    self.engine.admit(&session_id, input(Delivery::Steer, text)).unwrap();
                }
                Step::Event { body: EventBody::TurnStarted(_), .. } if interrupt => {
                    interrupt = false;
                    assert!(self.engine.interrupt(&session_id));
                }
                Step::Approval(row) => {
                    if let Some(decision) = case.approve {
                        self.engine.answer_approval(&row.approval_id, decision.into(), None, "check").unwrap();
                    }
                }
                Step::Closed(outcome) => break outcome,
                _ => {}
            }
        };
        let mut printer = Printer::default();
        let mut out = String::new();
        for event in self.engine.events(&session_id, 0, 10_000).unwrap() {
            out.push_str(&printer.line(event.seq, &event.body().unwrap()));
            out.push('\n');
        }
        out.push_str(&format!("=> {}\n", keel_protocol::wire_name(&outcome.reason)));
        (session_id, out)
    }
}

fn input(delivery: Delivery, text: String) -> NewInput {
    NewInput {
        input_id: None,
        delivery,
        input: vec![ContentPart::Text { text }],
        agent: None,
        model: None,
        kind: InputKind::Prompt,
    }
}

/// Runs `case` (JSON, see `Case`) and compares the printed log with `expect`.
pub async fn check(case: Value, expect: Expect) {
    let case: Case = serde_json::from_value(case).unwrap();
    let harness = Harness::new(&case);
    expect.assert_eq(&harness.run(&case).await.1);
}

/// Prints events one per line, ids numbered in order of appearance so that snapshots are stable.
#[derive(Default)]
struct Printer {
    ids: HashMap<String, String>,
}

impl Printer {
    fn line(&mut self, seq: u64, body: &EventBody) -> String {
        let kind = body.kind();
        let detail = match body {
            EventBody::SessionCreated(d) => format!("agent={}", d.agent),
            EventBody::SessionUpdated(d) => format!("{:?}", d.title),
            EventBody::SessionDeleted(_) | EventBody::QueuePaused(_) | EventBody::QueueResumed(_) => String::new(),
            EventBody::SessionStatus(d) => keel_protocol::wire_name(&d.status),
            EventBody::InputAdmitted(d) => format!(
                "{} {} {}{}",
                self.id(&d.input_id),
                keel_protocol::wire_name(&d.delivery),
                keel_protocol::wire_name(&d.disposition),
                if d.kind.is_prompt() { String::new() } else { format!(" {}", keel_protocol::wire_name(&d.kind)) }
            ),
            EventBody::InputRemoved(d) => self.id(&d.input_id),
            EventBody::InputPromoted(d) => {
                let inputs: Vec<String> = d.input_ids.iter().map(|i| self.id(i)).collect();
                format!("[{}] -> {}", inputs.join(", "), self.id(&d.message_id))
            }
            EventBody::ActivityOpened(d) => {
                format!("{} {}", self.id(&d.activity_id), keel_protocol::wire_name(&d.trigger))
            }
            EventBody::ActivityClosed(d) => {
                let error = d.error.as_deref().map(|e| format!(" {e:?}")).unwrap_or_default();
                format!("{} {}{error}", self.id(&d.activity_id), keel_protocol::wire_name(&d.reason))
            }
            EventBody::TurnStarted(d) => format!("{} {}", self.id(&d.turn_id), d.model),
            EventBody::TurnCompleted(d) | EventBody::TurnStreamed(d) => {
                format!("{} {}", self.id(&d.turn_id), d.finish_reason)
            }
            EventBody::TurnFailed(d) => {
                format!("{} {} retryable={}", self.id(&d.turn_id), d.error.kind, d.retryable)
            }
            EventBody::RetryScheduled(d) => format!("{} attempt={} {}", self.id(&d.turn_id), d.attempt, d.error.kind),
            EventBody::TextCompleted(d) | EventBody::ReasoningCompleted(d) => format!("{:?}", d.text),
            EventBody::ToolCalled(d) => {
                let provider = d.provider_call_id.as_deref().map(|p| self.id(p)).unwrap_or_else(|| "-".into());
                format!("{} ({provider}) {} {}", self.id(&d.call_id), d.tool, d.input)
            }
            EventBody::ToolStarted(d) => self.id(&d.call_id),
            EventBody::ToolCompleted(d) => format!("{} {:?}", self.id(&d.call_id), first_line(&d.output)),
            EventBody::ToolFailed(d) => format!("{} {:?}", self.id(&d.call_id), d.error),
            EventBody::ApprovalRequested(d) => {
                format!("{} {} {} {:?}", self.id(&d.approval_id), self.id(&d.call_id), d.action, d.resources)
            }
            EventBody::ApprovalResolved(d) => {
                format!("{} {} by={}", self.id(&d.approval_id), keel_protocol::wire_name(&d.decision), d.by)
            }
            EventBody::TurnDispatched(d) => format!("{} attempt={}", self.id(&d.turn_id), d.attempt),
            EventBody::JobStarted(d) => format!("{} {:?}", self.id(&d.job_id), d.command),
            EventBody::JobCompleted(d) => format!("{} exit={:?}", self.id(&d.job_id), d.exit_code),
            EventBody::JobFailed(d) => format!("{} {:?}", self.id(&d.job_id), d.error),
            EventBody::JobCancelled(d) => self.id(&d.job_id),
            EventBody::SkillLoaded(d) => format!("{} {}", self.id(&d.call_id), d.name),
            EventBody::PluginActed(d) => format!("{} {}", d.plugin, d.change),
            EventBody::PluginFailed(d) => format!("{} {}", d.plugin, d.error),
            EventBody::ShellStarted(d) => format!("{} {:?}", self.id(&d.shell_id), d.command),
            EventBody::ShellCompleted(d) => format!("{} {:?} {:?}", self.id(&d.shell_id), d.exit_code, d.output),
            EventBody::SubagentStarted(d) => {
                format!("{} {} {} {:?}", self.id(&d.call_id), self.id(&d.child_session_id), d.agent, d.description)
            }
            EventBody::SubagentCompleted(d) => format!(
                "{} {} {} {:?}",
                self.id(&d.call_id),
                self.id(&d.child_session_id),
                keel_protocol::wire_name(&d.reason),
                d.answer
            ),
            EventBody::ActivitySuspended(d) => self.id(&d.activity_id),
            EventBody::ActivityResumed(d) => {
                format!("{} after={}", self.id(&d.activity_id), keel_protocol::wire_name(&d.after))
            }
            EventBody::RecoveryRequired(d) => {
                format!("{} {} {}", self.id(&d.activity_id), self.id(&d.turn_id), keel_protocol::wire_name(&d.reason))
            }
            EventBody::RecoveryResolved(d) => {
                format!("{} {} by={}", self.id(&d.activity_id), keel_protocol::wire_name(&d.decision), d.by)
            }
            EventBody::CompactionStarted(d) => {
                format!("{} {}", self.id(&d.compaction_id), keel_protocol::wire_name(&d.reason))
            }
            EventBody::CompactionCompleted(d) => {
                let pruned: Vec<String> = d.pruned_calls.iter().map(|c| self.id(c)).collect();
                let summary = d.summary.as_deref().map(|s| format!(" summary={:?}", first_line(s))).unwrap_or_default();
                format!("{} pruned=[{}]{summary}", self.id(&d.compaction_id), pruned.join(", "))
            }
            EventBody::CompactionFailed(d) => format!("{} {:?}", self.id(&d.compaction_id), d.error),
        };
        format!("{seq:>2} {kind} {detail}").trim_end().to_owned()
    }

    /// `act_0193…` becomes `act1`: the prefix and the order in which the id first appeared.
    fn id(&mut self, id: &str) -> String {
        let next = self.ids.len() + 1;
        self.ids
            .entry(id.to_owned())
            .or_insert_with(|| match id.split_once('_') {
                Some((prefix, rest)) if rest.len() == 32 => format!("{prefix}{next}"),
                _ => id.to_owned(),
            })
            .clone()
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
