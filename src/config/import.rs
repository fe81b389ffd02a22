//! Conversion of other agents' configs into keel's, with a report of what was carried over and what was not:
//! opencode's `opencode.json(c)` (`legacy`, also read as a layer where a project has no keel file) and codex's
//! `config.toml` (`codex`). `keel config import` prints the report.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A converted config and what the conversion did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversion {
    pub config: Value,
    /// `keel key ← source key` lines.
    pub mapped: Vec<String>,
    /// `source key: why` lines.
    pub unmapped: Vec<String>,
}

impl Conversion {
    pub(super) fn map(&mut self, to: &str, from: &str) {
        self.mapped.push(format!("{to} ← {from}"));
    }

    pub(super) fn skip(&mut self, from: &str, why: &str) {
        self.unmapped.push(format!("{from}: {why}"));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Opencode,
    Codex,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("no {0} config found (looked at {1}); name the file")]
    NotFound(&'static str, String),
    #[error("{path}: {message}")]
    Read { path: String, message: String },
}

/// Where each tool looks for its config: opencode's project files in `cwd`, then the user's.
fn candidates(source: Source, cwd: &Path) -> Vec<PathBuf> {
    let mut files = match source {
        Source::Codex => Vec::new(),
        Source::Opencode => vec![cwd.join("opencode.jsonc"), cwd.join("opencode.json")],
    };
    files.extend(user_candidates(source));
    files
}

/// Where each tool keeps its user config.
fn user_candidates(source: Source) -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    match source {
        Source::Codex => {
            let codex_home = std::env::var_os("CODEX_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".codex"));
            vec![codex_home.join("config.toml")]
        }
        Source::Opencode => {
            let xdg = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".config"));
            vec![xdg.join("opencode/opencode.jsonc"), xdg.join("opencode/opencode.json")]
        }
    }
}

/// The tool's user config, where there is one.
pub fn user_file(source: Source) -> Option<PathBuf> {
    user_candidates(source).into_iter().find(|p| p.is_file())
}

/// Reads and converts `file` (or the tool's usual file). The source is `from`, else guessed from the file name.
pub fn import(from: Option<Source>, file: Option<&Path>, cwd: &Path) -> Result<(PathBuf, Conversion), ImportError> {
    let source = from.unwrap_or(match file {
        Some(f) if f.extension().is_some_and(|e| e == "toml") => Source::Codex,
        _ => Source::Opencode,
    });
    let file = match file {
        Some(file) => file.to_owned(),
        None => {
            let looked = candidates(source, cwd);
            let name = if source == Source::Codex { "codex" } else { "opencode" };
            let shown = looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
            looked.into_iter().find(|p| p.is_file()).ok_or(ImportError::NotFound(name, shown))?
        }
    };
    let shown = file.display().to_string();
    let read = |message: String| ImportError::Read { path: shown.clone(), message };
    let text = std::fs::read_to_string(&file).map_err(|e| read(e.to_string()))?;
    let conversion = match source {
        Source::Codex => {
            let doc: toml::Table = toml::from_str(&text).map_err(|e| read(e.to_string()))?;
            let doc = serde_json::to_value(doc).map_err(|e| read(e.to_string()))?;
            super::codex::convert(&doc)
        }
        Source::Opencode => {
            let doc: Value =
                serde_json::from_str(&super::jsonc::to_json(&text)).map_err(|e| read(super::scrub(&e.to_string())))?;
            super::legacy::convert_reported(doc)
        }
    };
    Ok((file, conversion))
}
