//! `agent/list` and `skill/list`.

use std::sync::Arc;

use keel_protocol::agent::{AgentInfo, AgentListResult, CwdParams, SkillInfo, SkillListResult};

use super::ApiError;
use crate::engine::Engine;
use crate::rpc::Call;

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
