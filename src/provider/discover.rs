//! Asks OpenAI-compatible providers from config which models they serve (`GET {baseUrl}/models`), so that a local
//! server's models appear in the model database without being declared. Runs in the background; a provider that
//! does not answer is recorded as down, never an error for anyone else.

use std::time::Duration;

use serde::Deserialize;

use super::Wire;
use super::catalog::ModelSpec;
use super::registry::{Discovery, ProviderEntry, Registry};
use crate::config::Config;

/// A local server answers at once or not at all; a slow hosted one is retried at the next config change.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
struct Listing {
    data: Vec<Listed>,
}

#[derive(Deserialize)]
struct Listed {
    id: String,
    /// OpenRouter, LM Studio.
    #[serde(default)]
    context_length: Option<u64>,
    /// vLLM.
    #[serde(default)]
    max_model_len: Option<u64>,
    /// `library` from Ollama, whose `/api/show` has the context length its `/v1/models` lacks.
    #[serde(default)]
    owned_by: Option<String>,
}

/// The providers worth asking: declared in config, speaking openai-chat, with a base URL.
pub fn candidates(registry: &Registry, config: &Config) -> Vec<ProviderEntry> {
    registry
        .providers(config)
        .into_iter()
        .filter(|p| config.providers.contains_key(&p.id) && p.wire == Wire::OpenaiChat && !p.base_url.is_empty())
        .collect()
}

/// Asks one provider. Never fails: an unreachable or odd server is `Down` with the reason.
pub async fn discover(registry: &Registry, entry: &ProviderEntry) -> Discovery {
    let (client, key) = registry.discovery_client(entry);
    let url = format!("{}/models", entry.base_url.trim_end_matches('/'));
    let mut request = client.get(&url).timeout(TIMEOUT);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    for (name, value) in &entry.settings.headers {
        request = request.header(name, value);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Discovery::Down(crate::secret::scrub_owned(reason(&e))),
    };
    if !response.status().is_success() {
        return Discovery::Down(crate::secret::scrub_owned(format!("{url} answered {}", response.status())));
    }
    let listing: Listing = match response.json().await {
        Ok(listing) => listing,
        Err(_) => return Discovery::Down(format!("{url} did not answer with a model list")),
    };
    let mut models = Vec::with_capacity(listing.data.len());
    for m in listing.data {
        let mut spec = ModelSpec::unknown(&format!("{}/{}", entry.id, m.id));
        let mut window = m.context_length.or(m.max_model_len);
        if window.is_none() && m.owned_by.as_deref() == Some("library") {
            window = ollama_context(&client, &entry.base_url, &m.id).await;
        }
        if let Some(window) = window {
            spec.context_window = window;
        }
        models.push(spec);
    }
    models.sort_by(|a, b| a.id.cmp(&b.id));
    Discovery::Up(models)
}

/// Ollama's `POST /api/show`: the model's `<architecture>.context_length`. Best effort: `None` on any failure.
async fn ollama_context(client: &reqwest::Client, base_url: &str, model: &str) -> Option<u64> {
    let root = base_url.trim_end_matches('/').trim_end_matches("/v1");
    let response = client
        .post(format!("{root}/api/show"))
        .json(&serde_json::json!({ "model": model }))
        .timeout(TIMEOUT)
        .send()
        .await
        .ok()?;
    let shown: serde_json::Value = response.error_for_status().ok()?.json().await.ok()?;
    let info = shown.get("model_info")?.as_object()?;
    info.iter().find(|(key, _)| key.ends_with(".context_length")).and_then(|(_, v)| v.as_u64())
}

fn reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else {
        e.to_string()
    }
}
