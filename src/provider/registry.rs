//! Resolves `provider/model` to a provider instance and the model's description, from the built-in providers,
//! the config, the auth store and the model database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::anthropic::Anthropic;
use super::auth::AuthStore;
use super::catalog::{self, ModelSpec};
use super::http::Upstream;
use super::openai_chat::OpenAiChat;
use super::openai_responses::OpenAiResponses;
use super::scripted::Scripted;
use super::{Provider, ProviderError, Wire};
use crate::config::{Config, ProviderSettings};

/// The model used when neither the session, the agent nor the config names one.
pub const FALLBACK_MODEL: &str = "scripted/default";

struct Builtin {
    id: &'static str,
    name: &'static str,
    wire: Wire,
    base_url: &'static str,
    needs_key: bool,
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        id: "openai",
        name: "OpenAI",
        wire: Wire::OpenaiResponses,
        base_url: "https://api.openai.com/v1",
        needs_key: true,
    },
    Builtin {
        id: "anthropic",
        name: "Anthropic",
        wire: Wire::Anthropic,
        base_url: "https://api.anthropic.com/v1",
        needs_key: true,
    },
    Builtin {
        id: "openrouter",
        name: "OpenRouter",
        wire: Wire::OpenaiChat,
        base_url: "https://openrouter.ai/api/v1",
        needs_key: true,
    },
    Builtin {
        id: "groq",
        name: "Groq",
        wire: Wire::OpenaiChat,
        base_url: "https://api.groq.com/openai/v1",
        needs_key: true,
    },
    Builtin {
        id: "deepseek",
        name: "DeepSeek",
        wire: Wire::OpenaiChat,
        base_url: "https://api.deepseek.com/v1",
        needs_key: true,
    },
    Builtin {
        id: "ollama",
        name: "Ollama (local)",
        wire: Wire::OpenaiChat,
        base_url: "http://127.0.0.1:11434/v1",
        needs_key: false,
    },
    Builtin {
        id: "scripted",
        name: "Scripted (offline, not a model)",
        wire: Wire::Scripted,
        base_url: "",
        needs_key: false,
    },
];

/// A provider as configured: built-in defaults with the config's settings on top.
#[derive(Debug, Clone)]
pub struct ProviderEntry {
    pub id: String,
    pub name: String,
    pub wire: Wire,
    pub base_url: String,
    pub needs_key: bool,
    pub source: &'static str,
    pub settings: ProviderSettings,
}

pub struct Resolved {
    pub provider: Arc<dyn Provider>,
    pub spec: ModelSpec,
}

pub struct Registry {
    client: reqwest::Client,
    pub auth: AuthStore,
    scripted: Mutex<HashMap<Option<PathBuf>, Arc<Scripted>>>,
    runtime_models: Mutex<Vec<ModelSpec>>,
    /// Providers that plugins serve, by id.
    plugin_providers: Mutex<HashMap<String, Served>>,
    /// What each provider that lists its models listed last, and whether it answered.
    discovered: Mutex<HashMap<String, Discovery>>,
    /// The embedded catalog with the imported one over it, and where the import is stored.
    catalog: Mutex<Arc<Vec<ModelSpec>>>,
    data_dir: PathBuf,
}

/// A provider a plugin serves: its name and the turns' way to the plugin.
type Served = (String, Arc<dyn Provider>);

/// The outcome of asking a provider for its models.
#[derive(Debug, Clone, PartialEq)]
pub enum Discovery {
    Up(Vec<ModelSpec>),
    Down(String),
}

impl Registry {
    pub fn new(auth: AuthStore, data_dir: &std::path::Path) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(300))
            .build()
            .unwrap_or_default();
        let registry = Self {
            client,
            auth,
            scripted: Mutex::new(HashMap::new()),
            runtime_models: Mutex::new(Vec::new()),
            plugin_providers: Mutex::new(HashMap::new()),
            discovered: Mutex::new(HashMap::new()),
            catalog: Mutex::new(Arc::new(catalog::with_import(super::models_dev::load(data_dir)))),
            data_dir: data_dir.to_owned(),
        };
        // The scripted provider describes its one model itself, as any provider may at run time.
        registry.register_model(ModelSpec {
            id: FALLBACK_MODEL.into(),
            name: "Scripted playback (not a model)".into(),
            context_window: 1_000_000,
            max_output_tokens: 100_000,
            tools: true,
            reasoning: true,
            images: false,
            cost: Default::default(),
            source: "runtime",
        });
        registry
    }

    pub fn register_model(&self, spec: ModelSpec) {
        let mut models = self.runtime_models.lock();
        models.retain(|m| m.id != spec.id);
        models.push(spec);
    }

    /// A provider a plugin serves, with its models (which replace those it registered before). False when `id` is
    /// a built-in or configured provider's.
    pub fn register_plugin_provider(
        &self,
        config: &Config,
        id: &str,
        name: String,
        provider: Arc<dyn Provider>,
        models: Vec<ModelSpec>,
    ) -> bool {
        let taken = BUILTINS.iter().any(|b| b.id == id) || config.providers.contains_key(id);
        if taken {
            return false;
        }
        self.plugin_providers.lock().insert(id.to_owned(), (name, provider));
        let prefix = format!("{id}/");
        let mut runtime = self.runtime_models.lock();
        runtime.retain(|m| !m.id.starts_with(&prefix));
        runtime.extend(models);
        true
    }

    /// Reads the imported catalog again; true when the model database changed.
    pub fn reload_catalog(&self) -> bool {
        let fresh = catalog::with_import(super::models_dev::load(&self.data_dir));
        let mut current = self.catalog.lock();
        if **current == fresh {
            return false;
        }
        *current = Arc::new(fresh);
        true
    }

    /// Records what a provider listed (or why it could not be asked). True when anything changed.
    pub fn record_discovery(&self, provider: &str, discovery: Discovery) -> bool {
        let mut discovered = self.discovered.lock();
        if discovered.get(provider) == Some(&discovery) {
            return false;
        }
        discovered.insert(provider.to_owned(), discovery);
        true
    }

    /// Whether a provider answered when last asked for its models (`None`: never asked).
    pub fn reach(&self, provider: &str) -> Option<Result<(), String>> {
        self.discovered.lock().get(provider).map(|d| match d {
            Discovery::Up(_) => Ok(()),
            Discovery::Down(reason) => Err(reason.clone()),
        })
    }

    /// The HTTP client and key to ask `entry` for its models with.
    pub fn discovery_client(&self, entry: &ProviderEntry) -> (reqwest::Client, Option<String>) {
        (self.client.clone(), self.api_key(entry))
    }

    pub fn providers(&self, config: &Config) -> Vec<ProviderEntry> {
        let mut entries: Vec<ProviderEntry> = BUILTINS
            .iter()
            .map(|b| ProviderEntry {
                id: b.id.into(),
                name: b.name.into(),
                wire: b.wire,
                base_url: b.base_url.into(),
                needs_key: b.needs_key,
                source: "builtin",
                settings: ProviderSettings::default(),
            })
            .collect();
        for (id, settings) in &config.providers {
            let entry = match entries.iter_mut().find(|e| &e.id == id) {
                Some(entry) => entry,
                None => {
                    entries.push(ProviderEntry {
                        id: id.clone(),
                        name: id.clone(),
                        wire: Wire::OpenaiChat,
                        base_url: String::new(),
                        needs_key: false,
                        source: "config",
                        settings: ProviderSettings::default(),
                    });
                    let last = entries.len() - 1;
                    &mut entries[last]
                }
            };
            if let Some(name) = &settings.name {
                entry.name = name.clone();
            }
            if let Some(wire) = settings.wire {
                entry.wire = wire;
            }
            if let Some(url) = &settings.base_url {
                entry.base_url = url.clone();
            }
            entry.settings = settings.clone();
        }
        for (id, (name, _)) in self.plugin_providers.lock().iter() {
            if !entries.iter().any(|e| &e.id == id) {
                entries.push(ProviderEntry {
                    id: id.clone(),
                    name: name.clone(),
                    wire: Wire::Plugin,
                    base_url: String::new(),
                    needs_key: false,
                    source: "plugin",
                    settings: ProviderSettings::default(),
                });
            }
        }
        entries
    }

    fn api_key(&self, entry: &ProviderEntry) -> Option<String> {
        entry.settings.api_key.clone().filter(|k| !k.is_empty()).or_else(|| self.auth.key(&entry.id))
    }

    pub fn authenticated(&self, entry: &ProviderEntry) -> bool {
        !entry.needs_key || self.api_key(entry).is_some()
    }

    /// Every known model: the catalog, then config declarations (which override the catalog), then run-time ones
    /// (registered, or listed by a provider in config).
    pub fn models(&self, config: &Config) -> Vec<ModelSpec> {
        let mut models: Vec<ModelSpec> = self.catalog.lock().to_vec();
        for (provider, settings) in &config.providers {
            for (model, m) in &settings.models {
                let id = format!("{provider}/{model}");
                let mut spec = models.iter().find(|s| s.id == id).cloned().unwrap_or_else(|| ModelSpec::unknown(&id));
                spec.source = "config";
                if let Some(name) = &m.name {
                    spec.name = name.clone();
                }
                spec.context_window = m.context_window.unwrap_or(spec.context_window);
                spec.max_output_tokens = m.max_output_tokens.unwrap_or(spec.max_output_tokens);
                spec.tools = m.tools.unwrap_or(spec.tools);
                spec.reasoning = m.reasoning.unwrap_or(spec.reasoning);
                spec.images = m.images.unwrap_or(spec.images);
                if let Some(cost) = &m.cost {
                    spec.cost = cost.clone();
                }
                models.retain(|s| s.id != id);
                models.push(spec);
            }
        }
        for spec in self.runtime_models.lock().iter() {
            if !models.iter().any(|m| m.id == spec.id) {
                models.push(spec.clone());
            }
        }
        let discovered = self.discovered.lock();
        for (provider, discovery) in discovered.iter() {
            let Discovery::Up(listed) = discovery else { continue };
            if !config.providers.contains_key(provider) {
                continue;
            }
            for spec in listed {
                if !models.iter().any(|m| m.id == spec.id) {
                    models.push(spec.clone());
                }
            }
        }
        models
    }

    /// Whether `model` can run as things stand: its provider is declared in config (or is a built-in one whose
    /// key is present) and has its credential. `Err` says why not, for pickers to show. The offline scripted
    /// player is a model only when config names it (as `model` or under `providers`).
    pub fn runnable(&self, config: &Config, model: &str) -> Result<(), String> {
        let (provider, _) = split(model).map_err(|e| e.to_string())?;
        let Some(entry) = self.providers(config).into_iter().find(|p| p.id == provider) else {
            return Err(format!("provider {provider} is not configured"));
        };
        let declared = config.providers.contains_key(provider);
        if entry.wire == Wire::Scripted {
            return if declared || config.model.as_deref() == Some(model) {
                Ok(())
            } else {
                Err("offline scripted playback, not a model".into())
            };
        }
        if !self.authenticated(&entry) {
            let hint = super::auth::env_var(provider).map(|v| format!(" or set {v}")).unwrap_or_default();
            return Err(format!("no credentials for {provider}: run `keel auth set {provider}`{hint}"));
        }
        if !declared && !entry.needs_key {
            return Err(format!("provider {provider} is not configured: declare it under `providers`"));
        }
        Ok(())
    }

    /// `runnable` for each of `models`, each provider judged once (an imported catalog holds thousands of models,
    /// and judging reads the credential store). Only the built-in scripted player depends on the model itself.
    pub fn runnable_each(&self, config: &Config, models: &[ModelSpec]) -> Vec<Result<(), String>> {
        let mut by_provider: HashMap<&str, Result<(), String>> = HashMap::new();
        models
            .iter()
            .map(|m| match m.provider() {
                "scripted" => self.runnable(config, &m.id),
                provider => by_provider.entry(provider).or_insert_with(|| self.runnable(config, &m.id)).clone(),
            })
            .collect()
    }

    /// Where the key `entry` would send comes from, without the key: `config`, `auth store`, `env VAR`.
    pub fn key_source(&self, entry: &ProviderEntry) -> Option<String> {
        if entry.settings.api_key.as_deref().is_some_and(|k| !k.is_empty()) {
            return Some("config".into());
        }
        self.auth.key_source(&entry.id)
    }

    /// The model a session runs when nothing more specific is set.
    pub fn default_model(config: &Config) -> String {
        config.model.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| FALLBACK_MODEL.into())
    }

    /// Checks that `model` names a configured provider, without building anything.
    pub fn check_model(&self, config: &Config, model: &str) -> Result<(), ProviderError> {
        let (provider, name) = split(model)?;
        if name.is_empty() {
            return Err(ProviderError::NotConfigured(format!("model {model:?} must be written provider/model")));
        }
        self.providers(config).iter().find(|p| p.id == provider).map(|_| ()).ok_or_else(|| unknown_provider(provider))
    }

    pub fn resolve(&self, config: &Config, model: &str) -> Result<Resolved, ProviderError> {
        let (provider_id, _) = split(model)?;
        if let Some((_, provider)) = self.plugin_providers.lock().get(provider_id).cloned() {
            let spec =
                self.models(config).into_iter().find(|m| m.id == model).unwrap_or_else(|| ModelSpec::unknown(model));
            return Ok(Resolved { provider, spec });
        }
        let entry = self
            .providers(config)
            .into_iter()
            .find(|p| p.id == provider_id)
            .ok_or_else(|| unknown_provider(provider_id))?;
        let spec = self.models(config).into_iter().find(|m| m.id == model).unwrap_or_else(|| ModelSpec::unknown(model));
        let api_key = self.api_key(&entry);
        if entry.needs_key && api_key.is_none() {
            let hint = super::auth::env_var(&entry.id).map(|v| format!(" or set {v}")).unwrap_or_default();
            return Err(ProviderError::NotConfigured(format!(
                "no credentials for provider {}: run `keel auth set {}`{hint}",
                entry.id, entry.id
            )));
        }
        // Whatever a config substitution produced for the key or a header is a secret now.
        let secret_headers = entry
            .settings
            .headers
            .iter()
            .filter(|(name, _)| crate::secret::is_secret_name(name) || name.eq_ignore_ascii_case("authorization"));
        api_key.iter().chain(secret_headers.map(|(_, value)| value)).for_each(|v| crate::secret::remember(v));
        let upstream = Upstream {
            body: entry.settings.body.clone(),
            client: self.client.clone(),
            base_url: entry.base_url.clone(),
            api_key,
            headers: entry.settings.headers.clone().into_iter().collect(),
            timeouts: {
                let defaults = super::http::Timeouts::default();
                let ms = |v: Option<u64>, default| v.map_or(default, std::time::Duration::from_millis);
                super::http::Timeouts {
                    first_byte: ms(entry.settings.first_byte_timeout_ms, defaults.first_byte),
                    idle: ms(entry.settings.idle_timeout_ms, defaults.idle),
                }
            },
        };
        let provider: Arc<dyn Provider> = match entry.wire {
            Wire::OpenaiChat => Arc::new(OpenAiChat { upstream }),
            Wire::OpenaiResponses => Arc::new(OpenAiResponses { upstream }),
            Wire::Anthropic => Arc::new(Anthropic { upstream }),
            Wire::Plugin => {
                return Err(ProviderError::NotConfigured(format!(
                    "provider {} is served by a plugin that is not running",
                    entry.id
                )));
            }
            Wire::Scripted => {
                let path =
                    entry.settings.script.clone().or_else(|| std::env::var("KEEL_SCRIPT").ok()).map(PathBuf::from);
                let mut scripted = self.scripted.lock();
                let player = scripted.entry(path.clone()).or_insert_with(|| Arc::new(Scripted::new(path)));
                Arc::clone(player) as Arc<dyn Provider>
            }
        };
        Ok(Resolved { provider, spec })
    }
}

fn split(model: &str) -> Result<(&str, &str), ProviderError> {
    model
        .split_once('/')
        .ok_or_else(|| ProviderError::NotConfigured(format!("model {model:?} must be written provider/model")))
}

fn unknown_provider(id: &str) -> ProviderError {
    let known: Vec<&str> = BUILTINS.iter().map(|b| b.id).collect();
    ProviderError::NotConfigured(format!(
        "unknown provider {id:?}: declare it under `providers` in the config (built in: {})",
        known.join(", ")
    ))
}
