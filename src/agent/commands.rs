//! Slash commands: prompt templates with `$ARGUMENTS` (and `$1`, `$2`…), from the built-ins, markdown files
//! (`commands/` of the global config folder, then `.keel/commands/` and `.opencode/command(s)/` from the root down;
//! front matter `description`, `agent`, `model`, the body is the template), config's `commands`, and one per skill.
//! Later sources replace earlier ones of the same name.

use std::path::Path;

use serde_json::Value;

use super::skills;
use crate::config::{CommandSettings, Config, Paths};

/// The command that queues a compaction instead of a prompt.
pub const COMPACT: &str = "compact";

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub settings: CommandSettings,
    /// `builtin`, `config`, `skill`, `mcp`, or the file.
    pub source: String,
    /// An MCP server's prompt (`server:prompt`) and the names of its arguments: its text comes from the server when
    /// it runs, not from `settings.template`.
    pub mcp_arguments: Option<Vec<String>>,
}

impl Command {
    pub fn description(&self) -> &str {
        self.settings.description.as_deref().unwrap_or_default()
    }

    /// Whether the template takes arguments.
    pub fn takes_arguments(&self) -> bool {
        match &self.mcp_arguments {
            Some(arguments) => !arguments.is_empty(),
            None => self.settings.template.contains("$ARGUMENTS") || self.settings.template.contains("$1"),
        }
    }

    /// What to type after the command: an MCP prompt's argument names, else "arguments".
    pub fn hint(&self) -> String {
        match &self.mcp_arguments {
            Some(arguments) => arguments.join(" "),
            None => "arguments".into(),
        }
    }

    /// The prompt this command sends with `arguments`. Arguments to a template that does not place them are added
    /// after it, so none are lost.
    pub fn expand(&self, arguments: &str) -> String {
        let arguments = arguments.trim();
        let template = &self.settings.template;
        let placed = template.contains("$ARGUMENTS") || (1..=9).any(|i| template.contains(&format!("${i}")));
        let words: Vec<&str> = arguments.split_whitespace().collect();
        let mut text = template.replace("$ARGUMENTS", arguments);
        // From $9 down, so that `$1` does not eat the start of `$10`-like text.
        for i in (1..=9).rev() {
            text = text.replace(&format!("${i}"), words.get(i - 1).copied().unwrap_or_default());
        }
        if !placed && !arguments.is_empty() {
            text = format!("{text}\n\n{arguments}");
        }
        text
    }
}

fn builtin(name: &str, description: &str, template: &str) -> Command {
    Command {
        name: name.into(),
        settings: CommandSettings {
            template: template.into(),
            description: Some(description.into()),
            agent: None,
            model: None,
        },
        source: "builtin".into(),
        mcp_arguments: None,
    }
}

pub fn discover(config: &Config, paths: &Paths, cwd: Option<&Path>) -> Vec<Command> {
    let mut commands = vec![
        builtin(COMPACT, "Compact the conversation: summarise it to free the context window", ""),
        builtin(
            "init",
            "Write an AGENTS.md for this project",
            "Study this repository (its layout, build and test commands, code style, conventions) and write an \
             AGENTS.md at its root for coding agents: how to build, test and lint, the layout, and the rules a \
             change must follow. Keep it short and specific. If an AGENTS.md exists, improve it. $ARGUMENTS",
        ),
        builtin(
            "review",
            "Review the working tree's changes with a subagent",
            "Review the changes in the working tree (`git status`, `git diff` and `git diff --staged`): use the task \
             tool with the general agent to read them and report bugs, risky changes, missing tests and style \
             problems, most important first, with file and line. Do not change files. $ARGUMENTS",
        ),
    ];
    let mut add = |command: Command| {
        commands.retain(|c| c.name != command.name);
        commands.push(command);
    };
    for skill in skills::discover(paths, cwd) {
        let template = format!("Load the skill {:?} with the skill tool and follow it. $ARGUMENTS", skill.name);
        let settings =
            CommandSettings { template, description: Some(skill.description.clone()), agent: None, model: None };
        add(Command { name: skill.name, settings, source: "skill".into(), mcp_arguments: None });
    }
    let folders =
        super::folders(paths, cwd, "commands", &[".keel/commands", ".opencode/command", ".opencode/commands"]);
    for file in folders.iter().flat_map(|f| super::markdown_files(f)) {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let Some(name) = file.file_stem().and_then(|s| s.to_str()) else { continue };
        let doc = super::markdown::parse(&text);
        let field = |key: &str| doc.front.get(key).and_then(Value::as_str).map(str::to_owned);
        let settings = CommandSettings {
            template: doc.body.clone(),
            description: field("description"),
            agent: field("agent"),
            model: field("model"),
        };
        add(Command { name: name.to_owned(), settings, source: file.display().to_string(), mcp_arguments: None });
    }
    for (name, settings) in &config.commands {
        add(Command { name: name.clone(), settings: settings.clone(), source: "config".into(), mcp_arguments: None });
    }
    commands.sort_by(|a, b| a.name.cmp(&b.name));
    commands
}

/// `/name arguments` as a command and its arguments; `None` for text that is not a slash command.
pub fn parse_invocation(text: &str) -> Option<(&str, &str)> {
    let rest = text.trim_start().strip_prefix('/')?;
    let (name, arguments) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    (!name.is_empty() && !name.contains('/')).then_some((name, arguments.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_take_their_arguments() {
        let command = |template: &str| Command {
            name: "c".into(),
            settings: CommandSettings { template: template.into(), ..Default::default() },
            source: "test".into(),
            mcp_arguments: None,
        };
        let check = |template: &str, arguments: &str, expected: &str| {
            assert_eq!(command(template).expand(arguments), expected, "{template:?} {arguments:?}");
        };
        check("Fix $ARGUMENTS now", " the login test ", "Fix the login test now");
        check("Move $1 to $2", "a.rs b.rs", "Move a.rs to b.rs");
        check("Move $1 to $2", "a.rs", "Move a.rs to ");
        check("Explain the code", "", "Explain the code");
        check("Explain the code", "in main.rs", "Explain the code\n\nin main.rs");
        assert_eq!(parse_invocation("/test src/lib.rs --all"), Some(("test", "src/lib.rs --all")));
        assert_eq!(parse_invocation("  /compact"), Some(("compact", "")));
        assert_eq!(parse_invocation("/usr/bin/env is a path"), None);
        assert_eq!(parse_invocation("no command"), None);
    }
}
