//! `agent/list`, `skill/list`, `command/list` and `session/command`.

use std::sync::Arc;

use keel_protocol::agent::{
    AgentInfo, AgentListResult, CommandInfo, CommandListResult, CwdParams, SessionCommandParams, SkillInfo,
    SkillListResult,
};
use keel_protocol::input::{ContentPart, Delivery, InputKind, PromptResult};

use super::ApiError;
use crate::agent::commands::COMPACT;
use crate::engine::Engine;
use crate::rpc::Call;
use crate::session::inbox::NewInput;

fn cwd(p: Option<CwdParams>) -> Option<String> {
    p.and_then(|p| p.cwd).or_else(|| std::env::current_dir().ok().map(|d| d.display().to_string()))
}

pub async fn list(engine: Arc<Engine>, p: Option<CwdParams>, _: Call) -> Result<AgentListResult, ApiError> {
    let (config, sources) = engine.agents(cwd(p).as_deref());
    let agents = config
        .agents
        .into_iter()
        .map(|(name, settings)| AgentInfo {
            description: settings.description.clone().unwrap_or_default(),
            mode: crate::agent::mode(&settings).to_owned(),
            model: settings.model,
            source: sources.get(&name).cloned().unwrap_or_else(|| "config".into()),
            name,
        })
        .collect();
    Ok(AgentListResult { agents })
}

pub async fn skills(engine: Arc<Engine>, p: Option<CwdParams>, _: Call) -> Result<SkillListResult, ApiError> {
    let cwd = cwd(p);
    let skills = crate::agent::skills::discover(engine.paths(), cwd.as_deref().map(std::path::Path::new))
        .into_iter()
        .map(|s| SkillInfo { name: s.name, description: s.description, path: s.path.display().to_string() })
        .collect();
    Ok(SkillListResult { skills })
}

pub async fn commands(engine: Arc<Engine>, p: Option<CwdParams>, _: Call) -> Result<CommandListResult, ApiError> {
    let cwd = cwd(p);
    let commands = engine
        .commands(cwd.as_deref(), None)
        .into_iter()
        .map(|c| CommandInfo {
            description: c.description().to_owned(),
            hint: c.takes_arguments().then(|| c.hint()),
            source: c.source,
            name: c.name,
        })
        .collect();
    Ok(CommandListResult { commands })
}

pub async fn run(engine: Arc<Engine>, p: SessionCommandParams, _: Call) -> Result<PromptResult, ApiError> {
    let session = engine.sessions.get(&p.session_id)?;
    let new = command_input(&engine, &session.cwd, Some(&p.session_id), &p.command, &p.arguments).await?;
    if let Some(model) = &new.model {
        super::session::check_model(&engine, Some(&session.cwd), model)?;
    }
    Ok(super::input::prompt_result(engine.admit(&p.session_id, new)?))
}

/// The input a command sends: its expanded template as a queued prompt with its agent and model, or a compaction.
pub async fn command_input(
    engine: &Engine,
    cwd: &str,
    session_id: Option<&str>,
    name: &str,
    arguments: &str,
) -> Result<NewInput, ApiError> {
    let commands = engine.commands(Some(cwd), session_id);
    let Some(command) = commands.iter().find(|c| c.name == name) else {
        let names: Vec<&str> = commands.iter().map(|c| c.name.as_str()).collect();
        return Err(ApiError::invalid(
            "command",
            format!("no command {name:?}; the commands are: {}", names.join(", ")),
        ));
    };
    if command.name == COMPACT && command.source == "builtin" {
        return Ok(NewInput {
            input_id: None,
            delivery: Delivery::Queue,
            input: Vec::new(),
            agent: None,
            model: None,
            kind: InputKind::Compact,
        });
    }
    let text = match &command.mcp_arguments {
        Some(_) => engine.mcp_prompt_text(session_id, name, arguments).await?,
        None => command.expand(arguments),
    };
    if text.trim().is_empty() {
        return Err(ApiError::invalid("command", format!("the command {name:?} has an empty template")));
    }
    Ok(NewInput {
        input_id: None,
        delivery: Delivery::Queue,
        input: vec![ContentPart::Text { text }],
        agent: command.settings.agent.clone(),
        model: command.settings.model.clone(),
        kind: InputKind::Prompt,
    })
}
