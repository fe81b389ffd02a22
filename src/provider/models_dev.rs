//! Imports a models.dev-format catalog (`{provider: {models: {id: {name, limit, cost, tool_call, reasoning,
//! modalities}}}}`, as `https://models.dev/api.json` serves it) into keel's model database format. The engine has
//! no internet at run time, so a user fetches the file and `keel models --import FILE` stores it under keel's home,
//! where the registry reads it at start and whenever it changes.

use std::path::{Path, PathBuf};

use keel_protocol::model::ModelCost;
use serde_json::Value;

use super::catalog::ModelSpec;

/// The imported catalog, in the data directory.
pub fn stored(data_dir: &Path) -> PathBuf {
    data_dir.join("models.json")
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{0}: not a models.dev catalog (an object of providers, each with `models`)")]
    Shape(String),
    #[error("{path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// What an import found.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    pub providers: usize,
    pub models: usize,
    /// Entries left out and why (`provider/model: no context limit`).
    pub skipped: Vec<String>,
}

/// Converts a models.dev document; entries without a context limit are skipped (a window cannot be guessed).
pub fn convert(doc: &Value) -> Option<(Vec<ModelSpec>, Report)> {
    let providers = doc.as_object()?;
    let mut specs = Vec::new();
    let mut report = Report::default();
    for (provider_key, provider) in providers {
        let Some(models) = provider.get("models").and_then(Value::as_object) else { continue };
        let provider_id = provider.get("id").and_then(Value::as_str).unwrap_or(provider_key);
        report.providers += 1;
        for (model_key, m) in models {
            let model_id = m.get("id").and_then(Value::as_str).unwrap_or(model_key);
            let id = format!("{provider_id}/{model_id}");
            let number = |v: &Value| v.as_f64().unwrap_or_default();
            let Some(context) = m["limit"]["context"].as_u64().filter(|c| *c > 0) else {
                report.skipped.push(format!("{id}: no context limit"));
                continue;
            };
            let images = m["modalities"]["input"].as_array().is_some_and(|i| i.iter().any(|x| x == "image"));
            specs.push(ModelSpec {
                name: m.get("name").and_then(Value::as_str).unwrap_or(model_id).to_owned(),
                context_window: context,
                max_output_tokens: m["limit"]["output"].as_u64().filter(|o| *o > 0).unwrap_or(8_192),
                tools: m["tool_call"].as_bool().unwrap_or(false),
                reasoning: m["reasoning"].as_bool().unwrap_or(false),
                images,
                cost: ModelCost {
                    input: number(&m["cost"]["input"]),
                    output: number(&m["cost"]["output"]),
                    cache_read: number(&m["cost"]["cache_read"]),
                    cache_write: number(&m["cost"]["cache_write"]),
                },
                source: "catalog",
                id,
            });
            report.models += 1;
        }
    }
    specs.sort_by(|a, b| a.id.cmp(&b.id));
    Some((specs, report))
}

/// Reads `file`, converts it and stores it as the imported catalog (written whole, then renamed).
pub fn import(file: &Path, data_dir: &Path) -> Result<(PathBuf, Report), ImportError> {
    let shown = file.display().to_string();
    let text =
        std::fs::read_to_string(file).map_err(|e| ImportError::Read { path: shown.clone(), message: e.to_string() })?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| ImportError::Read { path: shown.clone(), message: format!("not JSON: {e}") })?;
    let (specs, report) = convert(&doc).ok_or_else(|| ImportError::Shape(shown.clone()))?;
    if report.providers == 0 {
        return Err(ImportError::Shape(shown));
    }
    let target = stored(data_dir);
    let err = |source| ImportError::Write { path: target.display().to_string(), source };
    std::fs::create_dir_all(data_dir).map_err(err)?;
    let tmp = data_dir.join(".models.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&specs).unwrap_or_default()).map_err(err)?;
    std::fs::rename(&tmp, &target).map_err(err)?;
    Ok((target, report))
}

/// The stored import, if there is one that reads.
pub fn load(data_dir: &Path) -> Option<Vec<ModelSpec>> {
    let text = std::fs::read_to_string(stored(data_dir)).ok()?;
    match serde_json::from_str(&text) {
        Ok(specs) => Some(specs),
        Err(e) => {
            tracing::error!("{}: {e}; the embedded catalog is used", stored(data_dir).display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn converts_limits_costs_and_capabilities() {
        let doc = json!({
            "acme": { "id": "acme", "models": {
                "big-1": { "id": "big-1", "name": "Big", "tool_call": true, "reasoning": true,
                    "modalities": { "input": ["text", "image"] },
                    "cost": { "input": 3, "output": 15, "cache_read": 0.3 },
                    "limit": { "context": 200000, "output": 64000 } },
                "nolimit": { "name": "?" }
            } },
            "empty": {}
        });
        let (specs, report) = convert(&doc).unwrap();
        assert_eq!(report, Report { providers: 1, models: 1, skipped: vec!["acme/nolimit: no context limit".into()] });
        let big = &specs[0];
        assert_eq!((big.id.as_str(), big.context_window, big.max_output_tokens), ("acme/big-1", 200_000, 64_000));
        assert!(big.tools && big.reasoning && big.images);
        assert_eq!(big.cost.cache_read, 0.3);
    }
}
