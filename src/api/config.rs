//! `config/set` and `config/unset`.

use std::path::PathBuf;
use std::sync::Arc;

use keel_protocol::config::{ConfigEditResult, ConfigPath, ConfigScope, ConfigSetParams, ConfigUnsetParams};

use super::ApiError;
use crate::config::write::{Scope, WriteError, Written};
use crate::engine::Engine;
use crate::rpc::Call;

pub async fn set(engine: Arc<Engine>, p: ConfigSetParams, _: Call) -> Result<ConfigEditResult, ApiError> {
    let scope = scope(p.scope, p.cwd)?;
    let keys = keys(&p.path)?;
    engine.set_config(&scope, &keys, &p.value).map(result).map_err(error)
}

pub async fn unset(engine: Arc<Engine>, p: ConfigUnsetParams, _: Call) -> Result<ConfigEditResult, ApiError> {
    let scope = scope(p.scope, p.cwd)?;
    let keys = keys(&p.path)?;
    engine.unset_config(&scope, &keys).map(result).map_err(error)
}

fn scope(scope: ConfigScope, cwd: Option<String>) -> Result<Scope, ApiError> {
    match (scope, cwd) {
        (ConfigScope::Global, _) => Ok(Scope::Global),
        (ConfigScope::Project, Some(cwd)) if std::path::Path::new(&cwd).is_absolute() => {
            Ok(Scope::Project(PathBuf::from(cwd)))
        }
        (ConfigScope::Project, Some(_)) => Err(ApiError::invalid("cwd", "must be an absolute path")),
        (ConfigScope::Project, None) => {
            Err(ApiError::invalid("cwd", "the project scope needs the project's directory"))
        }
    }
}

fn keys(path: &ConfigPath) -> Result<Vec<String>, ApiError> {
    let keys = path.keys();
    if keys.is_empty() || keys.iter().any(String::is_empty) {
        return Err(ApiError::invalid("path", "must name a key at each level, e.g. `providers.local.baseUrl`"));
    }
    Ok(keys)
}

fn result(written: Written) -> ConfigEditResult {
    ConfigEditResult { path: written.file.display().to_string(), changed: written.changed }
}

fn error(e: WriteError) -> ApiError {
    match e {
        WriteError::Invalid { at, message } if at.is_empty() || at == "." => ApiError::invalid("value", message),
        WriteError::Invalid { at, message } => ApiError::invalid("value", format!("config {at}: {message}")),
        WriteError::Path(e) => ApiError::invalid("path", e.to_string()),
        e @ WriteError::Unreadable { .. } => {
            ApiError::Conflict(format!("the file does not load now, fix it first: {e}"))
        }
        e @ WriteError::Io { .. } => ApiError::Internal(e.to_string()),
    }
}
