//! What a session's requests used and cost, and how full its model's context is.

use keel_protocol::session::Usage;

use super::compaction::{self, Budget};
use crate::config::CompactionSettings;
use crate::provider::TokenUsage;
use crate::provider::catalog::ModelSpec;
use crate::store::Store;

/// A request's usage in the protocol's terms, priced from the catalog.
pub fn priced(spec: &ModelSpec, usage: &TokenUsage) -> Usage {
    Usage {
        input_tokens: usage.input,
        output_tokens: usage.output,
        reasoning_tokens: usage.reasoning,
        cache_read_tokens: usage.cache_read,
        cache_write_tokens: usage.cache_write,
        cost_usd: spec.cost_of(usage),
        estimated: false,
    }
}

/// How full a session's context is against its model's window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ContextFigures {
    pub tokens: u64,
    pub window: u64,
    pub compact_at: u64,
}

impl ContextFigures {
    /// `spec`: the session's model, `None` when it does not resolve (the window is then unknown).
    pub fn measure(
        store: &Store,
        session_id: &str,
        spec: Option<&ModelSpec>,
        settings: &CompactionSettings,
    ) -> crate::store::Result<Self> {
        let tokens = compaction::measure(store, session_id, 0)?.tokens;
        let Some(spec) = spec else {
            return Ok(Self { tokens, ..Self::default() });
        };
        let budget = Budget::of(spec, settings);
        Ok(Self { tokens, window: spec.context_window, compact_at: budget.usable })
    }

    pub fn share(&self) -> f64 {
        if self.window == 0 { 0.0 } else { self.tokens as f64 / self.window as f64 }
    }
}
