//! Agents, instructions and skills: who the model is in a session and what it is told. Built-in agents (`build`,
//! `plan`, `general`, `explore`) are completed by markdown agents (the global config folder's `agents/`, then each
//! project folder's `.keel/agents/` and `.opencode/agent(s)/` from the root down to the session's directory) and by
//! config's `agents`, in that order, field by field. The result lives in `Config::agents`, so every reader of the
//! config sees the same agents.

pub mod commands;
pub mod instructions;
pub mod markdown;
pub mod skills;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::{AgentSettings, Config, Effect, Paths, PermissionRule};

pub const BUILD: &str = "build";
pub const PLAN: &str = "plan";

/// `primary`: chosen for a session or a prompt; `subagent`: started by `task`; `all`: both.
pub fn mode(settings: &AgentSettings) -> &str {
    settings.mode.as_deref().unwrap_or("primary")
}

pub fn is_subagent(settings: &AgentSettings) -> bool {
    matches!(mode(settings), "subagent" | "all")
}

/// Where each agent of the completed config comes from: `builtin`, `config`, or a markdown file.
pub type Sources = BTreeMap<String, String>;

/// Completes `config.agents` with the built-in and markdown agents visible from `cwd`.
pub fn complete(config: &mut Config, paths: &Paths, cwd: Option<&Path>) -> Sources {
    let mut agents = builtin();
    let mut sources: Sources = agents.keys().map(|name| (name.clone(), "builtin".to_owned())).collect();
    let mut add = |name: String, settings: AgentSettings| {
        let merged = match agents.remove(&name) {
            Some(base) => overlay(base, settings),
            None => settings,
        };
        agents.insert(name, merged);
    };
    for (name, file, settings) in markdown_agents(paths, cwd) {
        sources.insert(name.clone(), file.display().to_string());
        add(name, settings);
    }
    for (name, settings) in std::mem::take(&mut config.agents) {
        sources.entry(name.clone()).or_insert_with(|| "config".to_owned());
        add(name, settings);
    }
    config.agents = agents;
    sources
}

/// Whether the agent is offered `tool`: an exact entry decides, else the longest glob that matches, else yes.
pub fn offers(settings: Option<&AgentSettings>, tool: &str) -> bool {
    let Some(settings) = settings else { return true };
    if let Some(&enabled) = settings.tools.get(tool) {
        return enabled;
    }
    settings
        .tools
        .iter()
        .filter(|(pattern, _)| pattern.contains('*') && crate::permission::rules::matches(pattern, tool))
        .max_by_key(|(pattern, _)| pattern.len())
        .is_none_or(|(_, &enabled)| enabled)
}

fn rule(action: &str, pattern: &str, effect: Effect) -> PermissionRule {
    PermissionRule { action: action.into(), pattern: pattern.into(), effect }
}

fn builtin() -> BTreeMap<String, AgentSettings> {
    let agent = |description: &str, mode: &str| AgentSettings {
        description: Some(description.into()),
        mode: Some(mode.into()),
        ..Default::default()
    };
    let no = |names: &[&str]| names.iter().map(|n| (n.to_string(), false)).collect::<BTreeMap<_, _>>();
    let read_only = || {
        let mut rules = vec![rule("edit", "*", Effect::Deny), rule("bash", "*", Effect::Ask)];
        rules.extend(crate::permission::rules::looking_commands());
        rules
    };
    let mut plan = agent("Plans without changing anything: edits are refused and commands ask first.", "primary");
    plan.permissions = read_only();
    plan.system = Some(
        "You are in plan mode: study the code and the question, then propose a plan. Do not change files; \
         edits are refused."
            .into(),
    );
    let mut general =
        agent("A general-purpose agent for research and multi-step tasks; give it a self-contained job.", "subagent");
    general.tools = no(&["task", "todowrite"]);
    let mut explore = agent(
        "Explores the codebase fast without changing it: finds files, searches code, answers questions about it.",
        "subagent",
    );
    explore.tools = no(&["task", "todowrite", "write", "edit", "apply_patch"]);
    explore.permissions = read_only();
    BTreeMap::from([
        (
            BUILD.to_owned(),
            agent("The default agent: reads, edits and runs commands under the permission rules.", "primary"),
        ),
        (PLAN.to_owned(), plan),
        ("general".to_owned(), general),
        ("explore".to_owned(), explore),
    ])
}

/// `over`'s fields where it sets them, `base`'s elsewhere; tools and rules add up.
fn overlay(mut base: AgentSettings, over: AgentSettings) -> AgentSettings {
    base.description = over.description.or(base.description);
    base.system = over.system.or(base.system);
    base.mode = over.mode.or(base.mode);
    base.steps = over.steps.or(base.steps);
    base.model = over.model.or(base.model);
    base.reasoning_effort = over.reasoning_effort.or(base.reasoning_effort);
    base.sandbox = over.sandbox.or(base.sandbox);
    base.tools.extend(over.tools);
    base.permissions.extend(over.permissions);
    base
}

/// The folders agents, skills and commands are read from, lowest precedence first: the global config folder, then
/// the project's folders from its root down to the session's directory, each with `subdirs` (e.g. `.keel/agents`).
pub fn folders(paths: &Paths, cwd: Option<&Path>, global: &str, subdirs: &[&str]) -> Vec<PathBuf> {
    let mut folders = vec![paths.config_dir.join(global)];
    for dir in cwd.map(crate::config::paths::project_chain).unwrap_or_default() {
        folders.extend(subdirs.iter().map(|sub| dir.join(sub)));
    }
    folders
}

/// The `.md` files of a folder, by name.
pub fn markdown_files(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
    files.sort();
    files
}

fn markdown_agents(paths: &Paths, cwd: Option<&Path>) -> Vec<(String, PathBuf, AgentSettings)> {
    let folders = folders(paths, cwd, "agents", &[".keel/agents", ".opencode/agent", ".opencode/agents"]);
    let mut agents = Vec::new();
    for file in folders.iter().flat_map(|f| markdown_files(f)) {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let Some(stem) = file.file_stem().and_then(|s| s.to_str()) else { continue };
        let doc = markdown::parse(&text);
        let name = doc.front.get("name").and_then(Value::as_str).unwrap_or(stem).to_owned();
        agents.push((name, file.clone(), from_markdown(&doc)));
    }
    agents
}

/// An agent file's settings: front matter `description`, `mode`, `model`, `steps` (or `maxSteps`), `tools` (a map
/// of names to booleans, or the list of the only tools offered), `permission` (opencode's map: `edit: deny`, `bash:
/// {"git *": allow}`) or `permissions` (keel's rule list); the body is the prompt.
fn from_markdown(doc: &markdown::Document) -> AgentSettings {
    let front = &doc.front;
    let text = |key: &str| front.get(key).and_then(Value::as_str).map(str::to_owned);
    let steps = ["steps", "maxSteps", "max_steps"].iter().find_map(|k| front.get(*k).and_then(Value::as_u64));
    let tools = match front.get("tools") {
        Some(Value::Object(map)) => map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_bool()?))).collect(),
        Some(Value::Array(only)) => {
            let mut tools: BTreeMap<String, bool> =
                only.iter().filter_map(Value::as_str).map(|t| (t.to_owned(), true)).collect();
            tools.insert("*".into(), false);
            tools
        }
        _ => BTreeMap::new(),
    };
    let mut permissions = Vec::new();
    if let Some(Value::Object(map)) = front.get("permission") {
        for (action, value) in map {
            match value {
                Value::String(effect) => permissions.extend(effect_of(effect).map(|e| rule(action, "*", e))),
                Value::Object(patterns) => {
                    for (pattern, effect) in patterns {
                        permissions.extend(effect.as_str().and_then(effect_of).map(|e| rule(action, pattern, e)));
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(rules) = front.get("permissions").cloned() {
        permissions.extend(serde_json::from_value::<Vec<PermissionRule>>(rules).unwrap_or_default());
    }
    AgentSettings {
        description: text("description"),
        system: Some(doc.body.clone()).filter(|b| !b.is_empty()),
        mode: text("mode"),
        steps: steps.and_then(|s| u32::try_from(s).ok()),
        model: text("model"),
        reasoning_effort: text("reasoningEffort")
            .and_then(|e| serde_json::from_value(serde_json::Value::String(e)).ok()),
        sandbox: None,
        tools,
        permissions,
    }
}

fn effect_of(text: &str) -> Option<Effect> {
    match text {
        "allow" => Some(Effect::Allow),
        "ask" => Some(Effect::Ask),
        "deny" => Some(Effect::Deny),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_offered_unless_turned_off() {
        let tools = BTreeMap::from([("bash".into(), false), ("mcp_*".into(), false), ("mcp_fs_*".into(), true)]);
        let settings = AgentSettings { tools, ..Default::default() };
        let check = |tool: &str, expected: bool| assert_eq!(offers(Some(&settings), tool), expected, "{tool}");
        check("read", true);
        check("bash", false);
        check("mcp_web_search", false);
        check("mcp_fs_read", true);
        assert!(offers(None, "bash"));
    }

    #[test]
    fn a_markdown_agent_reads_opencode_and_keel_shapes() {
        let doc = markdown::parse(
            "---\ndescription: Reviews\nmode: subagent\nmodel: mock/m\nmaxSteps: 4\ntools:\n  - read\n  - grep\n\
             permission:\n  edit: deny\n  bash:\n    \"git *\": allow\n---\nYou review code.",
        );
        let agent = from_markdown(&doc);
        assert_eq!(agent.description.as_deref(), Some("Reviews"));
        assert_eq!(
            (agent.mode.as_deref(), agent.model.as_deref(), agent.steps),
            (Some("subagent"), Some("mock/m"), Some(4))
        );
        assert_eq!(agent.system.as_deref(), Some("You review code."));
        assert!(offers(Some(&agent), "read") && !offers(Some(&agent), "bash"));
        assert_eq!(agent.permissions, vec![rule("bash", "git *", Effect::Allow), rule("edit", "*", Effect::Deny)]);
    }
}
