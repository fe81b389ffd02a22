//! The model database: an embedded catalog of common models, plus models declared in config, plus models that
//! providers register at run time.

use std::sync::OnceLock;

use keel_protocol::model::{ModelCapabilities, ModelCost};
use serde::{Deserialize, Serialize};

use super::TokenUsage;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// `provider/model`.
    pub id: String,
    pub name: String,
    pub context_window: u64,
    pub max_output_tokens: u64,
    #[serde(default)]
    pub tools: bool,
    #[serde(default)]
    pub reasoning: bool,
    #[serde(default)]
    pub images: bool,
    #[serde(default)]
    pub cost: ModelCost,
    /// `catalog`, `config` or `runtime`.
    #[serde(skip, default = "catalog_source")]
    pub source: &'static str,
}

fn catalog_source() -> &'static str {
    "catalog"
}

impl ModelSpec {
    pub fn provider(&self) -> &str {
        self.id.split_once('/').map_or("", |(p, _)| p)
    }

    /// The provider's own name for the model.
    pub fn model(&self) -> &str {
        self.id.split_once('/').map_or(self.id.as_str(), |(_, m)| m)
    }

    pub fn capabilities(&self) -> ModelCapabilities {
        ModelCapabilities { tools: self.tools, reasoning: self.reasoning, images: self.images }
    }

    /// What a turn cost, from the per-million prices.
    pub fn cost_of(&self, usage: &TokenUsage) -> f64 {
        let c = &self.cost;
        (usage.input as f64 * c.input
            + (usage.output + usage.reasoning) as f64 * c.output
            + usage.cache_read as f64 * c.cache_read
            + usage.cache_write as f64 * c.cache_write)
            / 1_000_000.0
    }

    /// A model nobody described: generous limits, no prices.
    pub fn unknown(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: id.split_once('/').map_or(id, |(_, m)| m).to_owned(),
            context_window: 128_000,
            max_output_tokens: 8_192,
            tools: true,
            reasoning: false,
            images: false,
            cost: ModelCost::default(),
            source: "runtime",
        }
    }
}

/// The embedded catalog with an imported one (`keel models --import`) over it: an imported model replaces the
/// embedded one of the same id.
pub fn with_import(imported: Option<Vec<ModelSpec>>) -> Vec<ModelSpec> {
    let mut models = builtin().to_vec();
    for spec in imported.into_iter().flatten() {
        models.retain(|m| m.id != spec.id);
        models.push(spec);
    }
    models
}

/// The embedded catalog, parsed once.
pub fn builtin() -> &'static [ModelSpec] {
    static CATALOG: OnceLock<Vec<ModelSpec>> = OnceLock::new();
    CATALOG.get_or_init(|| serde_json::from_str(include_str!("catalog.json")).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_parses_and_prices_turns() {
        let catalog = builtin();
        assert!(catalog.len() > 10);
        let sonnet = catalog.iter().find(|m| m.id == "anthropic/claude-sonnet-4-5").unwrap();
        assert_eq!(sonnet.model(), "claude-sonnet-4-5");
        let usage = TokenUsage { input: 1_000_000, output: 100_000, ..Default::default() };
        assert!((sonnet.cost_of(&usage) - 4.5).abs() < 1e-9);
    }
}
