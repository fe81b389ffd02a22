//! What the model sees: the system prompt and the transcript, rebuilt from the projection before every turn, from
//! the latest compaction's checkpoint on (its summary, then the parts after it), so that a turn's cost follows the
//! size of the context, not the length of the log.

use std::path::Path;

use keel_protocol::turn::{Part, ToolStatus};

use crate::config::{Config, Paths};
use crate::provider::{ChatMessage, Thinking, ToolCall, ToolSpec, UserPart};
use crate::store::context::ContextRow;
use crate::store::transcript::{self, PartRow};
use crate::store::{Result, Store};

const BASE_PROMPT: &str = "You are keel, a coding agent working in the user's project. Use the tools to inspect and \
change the workspace; keep answers short and concrete; say what you changed.";

/// Files larger than this are cut when a prompt attaches them.
const MAX_ATTACHED_FILE: usize = 50 * 1024;

/// A system prompt and the instruction files it holds.
pub struct SystemPrompt {
    pub text: String,
    pub instructions: Vec<String>,
}

/// The base prompt, the environment, the agent's own prompt, the instruction files, and what the offered `task` and
/// `skill` tools can reach.
pub fn system_prompt(
    config: &Config,
    paths: &Paths,
    agent: &str,
    cwd: &Path,
    tools: &[ToolSpec],
    skills: &[crate::agent::skills::Skill],
) -> SystemPrompt {
    let mut prompt = String::from(BASE_PROMPT);
    prompt.push_str(&format!(
        "\n\n<env>\nworking directory: {}\nplatform: {}\n</env>",
        cwd.display(),
        std::env::consts::OS
    ));
    if let Some(system) = config.agents.get(agent).and_then(|a| a.system.as_deref()) {
        prompt.push_str("\n\n");
        prompt.push_str(system);
    }
    let found = crate::agent::instructions::discover(config, paths, cwd);
    for file in &found {
        prompt.push_str(&format!("\n\nInstructions from {}:\n{}", file.path.display(), file.text));
    }
    if tools.iter().any(|t| t.name == "task") {
        prompt.push_str("\n\nSubagents the task tool can start:");
        for (name, settings) in config.agents.iter().filter(|(_, a)| crate::agent::is_subagent(a)) {
            prompt.push_str(&format!("\n- {name}: {}", settings.description.as_deref().unwrap_or_default()));
        }
    }
    if tools.iter().any(|t| t.name == "skill") {
        prompt.push_str("\n\nSkills the skill tool loads:");
        for skill in skills {
            prompt.push_str(&format!("\n- {}: {}", skill.name, skill.description));
        }
    }
    SystemPrompt { text: prompt, instructions: found.into_iter().map(|f| f.path.display().to_string()).collect() }
}

/// The model's context as recorded: the checkpoint (with its summary and size anchor) and the parts after it.
pub struct Context {
    pub row: ContextRow,
    pub parts: Vec<PartRow>,
}

impl Context {
    pub fn load(store: &Store, session_id: &str) -> Result<Self> {
        store.query(|c| {
            let row = crate::store::context::get(c, session_id)?.unwrap_or_default();
            let parts = transcript::parts_after(c, session_id, row.checkpoint_seq, usize::MAX)?;
            Ok(Self { row, parts })
        })
    }

    /// The messages of a request: the summary (a user message, the one shape every wire accepts first), then the
    /// transcript after the checkpoint.
    pub fn messages(&self, cwd: &Path) -> Vec<ChatMessage> {
        let mut messages = Vec::with_capacity(self.parts.len() + 1);
        if let Some(summary) = &self.row.summary {
            messages.push(summary_message(summary));
        }
        messages.extend(history(&self.parts, cwd));
        messages
    }
}

pub fn summary_message(summary: &str) -> ChatMessage {
    ChatMessage::User(vec![UserPart::Text(format!(
        "The conversation so far was compacted; this summary stands for it:\n<summary>\n{summary}\n</summary>"
    ))])
}

/// Groups transcript parts into provider messages: a user message per promotion, an assistant message per turn
/// followed by one tool result per call.
pub fn history(parts: &[PartRow], cwd: &Path) -> Vec<ChatMessage> {
    let mut messages = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let message_id = &parts[i].message_id;
        let end = parts[i..].iter().position(|p| &p.message_id != message_id).map_or(parts.len(), |n| i + n);
        let group: Vec<Part> = parts[i..end].iter().filter_map(|p| serde_json::from_str(&p.data).ok()).collect();
        if parts[i].role == "user" {
            let raw: Vec<serde_json::Value> =
                parts[i..end].iter().filter_map(|p| serde_json::from_str(&p.data).ok()).collect();
            messages.push(ChatMessage::User(user_parts(&group, &raw, cwd)));
        } else {
            assistant(&group, &mut messages);
        }
        i = end;
    }
    messages
}

fn user_parts(parts: &[Part], raw: &[serde_json::Value], cwd: &Path) -> Vec<UserPart> {
    parts
        .iter()
        .zip(raw)
        .map(|(part, raw)| match part {
            Part::Text { text, .. } => UserPart::Text(text.clone()),
            Part::File { path, .. } => {
                let full = cwd.join(path);
                match std::fs::read_to_string(&full) {
                    Ok(text) => UserPart::Text(format!("File {path}:\n{}", truncate(&text, MAX_ATTACHED_FILE))),
                    Err(e) => UserPart::Text(format!("File {path} could not be read: {e}")),
                }
            }
            Part::Image { mime, .. } => UserPart::Image {
                mime: mime.clone(),
                data_base64: raw["dataBase64"].as_str().unwrap_or_default().to_owned(),
            },
            Part::Reasoning { text, .. } => UserPart::Text(text.clone()),
            Part::Tool { .. } => UserPart::Text(String::new()),
        })
        .collect()
}

fn assistant(parts: &[Part], messages: &mut Vec<ChatMessage>) {
    let mut reasoning = Vec::new();
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    for part in parts {
        match part {
            Part::Reasoning { text, signature: Some(signature), .. } => {
                reasoning.push(Thinking { text: text.clone(), signature: signature.clone() });
            }
            Part::Text { text: t, .. } => text.push_str(t),
            Part::Tool { call_id, provider_call_id, tool, input, status, output, error } => {
                // The provider is answered in its own ids; keel's stand in where it gave none, or where it gave
                // one id to two calls of the same message, which would make their results ambiguous.
                let call_id = match provider_call_id {
                    Some(id) if !id.is_empty() && !calls.iter().any(|c: &ToolCall| c.id == *id) => id,
                    _ => call_id,
                };
                calls.push(ToolCall { id: call_id.clone(), name: tool.clone(), input: input.clone() });
                let (output, is_error) = match status {
                    ToolStatus::Completed => (output.clone().unwrap_or_default(), false),
                    ToolStatus::Failed => (error.clone().unwrap_or_else(|| "failed".into()), true),
                    ToolStatus::Pending | ToolStatus::Running => ("interrupted".into(), true),
                };
                results.push(ChatMessage::ToolResult {
                    call_id: call_id.clone(),
                    tool: tool.clone(),
                    output,
                    is_error,
                });
            }
            _ => {}
        }
    }
    if text.is_empty() && calls.is_empty() {
        return;
    }
    messages.push(ChatMessage::Assistant { reasoning, text, tool_calls: calls });
    messages.extend(results);
}

/// The longest prefix of `text` within `max` bytes that ends on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
