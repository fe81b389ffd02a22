//! Agents, subagents and skills: `agent/list`, `skill/list`, and the events that link a parent session to the
//! child sessions its `task` calls start.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::method;
use crate::turn::CloseReason;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CwdParams {
    /// The project whose agents, skills or commands are listed (its `.keel/` folders and config); default: the
    /// engine's working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentListResult {
    pub agents: Vec<AgentInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    pub name: String,
    pub description: String,
    /// `primary` (chosen for a session or a prompt), `subagent` (started by `task`) or `all`.
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `builtin`, `config`, or the markdown file that declares it.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillListResult {
    pub skills: Vec<SkillInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillInfo {
    pub name: String,
    pub description: String,
    /// The skill's `SKILL.md`.
    pub path: String,
}

/// `skill.loaded` (version 1): a `skill` call loaded a skill's instructions into the conversation; recorded with
/// the call's `tool.completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillLoadedData {
    pub call_id: String,
    pub name: String,
}

/// `subagent.started` (version 1): a `task` call of this session started a child session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubagentStartedData {
    pub call_id: String,
    pub child_session_id: String,
    pub agent: String,
    pub description: String,
}

/// `subagent.completed` (version 1): the child's activity closed; its last answer is the call's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubagentCompletedData {
    pub call_id: String,
    pub child_session_id: String,
    pub reason: CloseReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

method!(
    /// Built-in agents (`build`, `plan`, `general`, `explore`), those of config, and markdown agents of the
    /// project's `.keel/agents/` (or `.opencode/agent(s)/`) and of the global config folder's `agents/`.
    AgentList,
    "agent/list",
    Option<CwdParams>,
    AgentListResult
);
method!(
    /// `SKILL.md` folders of `.keel/skills/`, `.claude/skills/`, `.opencode/skill(s)/` and the global config
    /// folder's `skills/`.
    SkillList,
    "skill/list",
    Option<CwdParams>,
    SkillListResult
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandListResult {
    pub commands: Vec<CommandInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandInfo {
    pub name: String,
    pub description: String,
    /// What the arguments are for, when the command takes any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// `builtin`, `config`, `skill`, or the markdown file that declares it.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionCommandParams {
    pub session_id: String,
    /// The command's name, without the slash.
    pub command: String,
    /// The text after the command: `$ARGUMENTS` (and `$1`, `$2`… word by word) in its template.
    #[serde(default)]
    pub arguments: String,
}

method!(
    /// Built-in commands (`compact`, `init`, `review`), config's `commands`, markdown commands of `.keel/commands/`
    /// (or `.opencode/command(s)/`) and of the global config folder's `commands/`, and a command per skill.
    CommandList,
    "command/list",
    Option<CwdParams>,
    CommandListResult
);
method!(
    /// Runs a command: its template, with the arguments put in, is admitted as a queued prompt (with the command's
    /// agent and model); `compact` queues a compaction.
    SessionCommand,
    "session/command",
    SessionCommandParams,
    crate::input::PromptResult,
    ordered_by = "sessionId"
);
