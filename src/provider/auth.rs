//! Credentials: `auth.json` (mode 0600) in the data directory, plus the providers' usual environment variables.
//! Keys are only ever read to build request headers; nothing here returns them to a client.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Credential {
    ApiKey { key: String },
}

impl Credential {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ApiKey { .. } => "api_key",
        }
    }

    pub fn secret(&self) -> &str {
        match self {
            Self::ApiKey { key } => key,
        }
    }
}

/// The environment variable each built-in provider reads its key from.
pub fn env_var(provider: &str) -> Option<&'static str> {
    Some(match provider {
        "openai" => "OPENAI_API_KEY",
        "anthropic" => "ANTHROPIC_API_KEY",
        "openrouter" => "OPENROUTER_API_KEY",
        "groq" => "GROQ_API_KEY",
        "deepseek" => "DEEPSEEK_API_KEY",
        _ => return None,
    })
}

pub struct AuthStore {
    path: PathBuf,
    lock: Mutex<()>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthEntry {
    pub provider: String,
    pub kind: &'static str,
    pub source: &'static str,
}

impl AuthStore {
    pub fn new(data_dir: &std::path::Path) -> Self {
        Self { path: data_dir.join("auth.json"), lock: Mutex::new(()) }
    }

    fn read(&self) -> Result<BTreeMap<String, Credential>, AuthError> {
        match std::fs::read_to_string(&self.path) {
            // serde's message could quote a key from the file: only the position is reported.
            Ok(text) => serde_json::from_str(&text).map_err(|e| AuthError::Read {
                path: self.path.display().to_string(),
                message: format!("not a valid credential store (line {}, column {})", e.line(), e.column()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(AuthError::Read { path: self.path.display().to_string(), message: e.to_string() }),
        }
    }

    /// Writes to a temporary file created 0600 and renames it over the store, so the file is never readable by
    /// others and never half-written.
    fn write(&self, entries: &BTreeMap<String, Credential>) -> Result<(), AuthError> {
        let err = |source| AuthError::Write { path: self.path.display().to_string(), source };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        let text = serde_json::to_string_pretty(entries).unwrap_or_default();
        file.write_all(text.as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }

    pub fn set(&self, provider: &str, credential: Credential) -> Result<(), AuthError> {
        let _guard = self.lock.lock();
        crate::secret::remember(credential.secret());
        let mut entries = self.read()?;
        entries.insert(provider.to_owned(), credential);
        self.write(&entries)
    }

    pub fn remove(&self, provider: &str) -> Result<bool, AuthError> {
        let _guard = self.lock.lock();
        let mut entries = self.read()?;
        let removed = entries.remove(provider).is_some();
        if removed {
            self.write(&entries)?;
        }
        Ok(removed)
    }

    /// The key for a provider: the store first, then its environment variable.
    pub fn key(&self, provider: &str) -> Option<String> {
        let key = match self.read().ok().and_then(|mut entries| entries.remove(provider)) {
            Some(credential) => Some(credential.secret().to_owned()),
            None => env_var(provider).and_then(|var| std::env::var(var).ok()).filter(|k| !k.is_empty()),
        };
        if let Some(key) = &key {
            crate::secret::remember(key);
        }
        key
    }

    /// Where `key` finds a provider's key, never the key: `auth store` or `env VAR`.
    pub fn key_source(&self, provider: &str) -> Option<String> {
        if self.read().ok().is_some_and(|entries| entries.contains_key(provider)) {
            return Some("auth store".into());
        }
        let var = env_var(provider)?;
        std::env::var(var).ok().filter(|k| !k.is_empty()).map(|_| format!("env {var}"))
    }

    /// A fingerprint of each stored credential, to tell which changed without keeping or showing any.
    pub fn fingerprints(&self) -> Result<BTreeMap<String, u64>, AuthError> {
        use std::hash::{Hash, Hasher};
        Ok(self
            .read()?
            .into_iter()
            .map(|(provider, credential)| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                credential.secret().hash(&mut hasher);
                (provider, hasher.finish())
            })
            .collect())
    }

    /// Which providers have credentials and where they come from; never the secrets.
    pub fn list(&self) -> Result<Vec<AuthEntry>, AuthError> {
        let entries = self.read()?;
        let mut out: Vec<AuthEntry> = entries
            .iter()
            .map(|(provider, c)| AuthEntry { provider: provider.clone(), kind: c.kind(), source: "store" })
            .collect();
        for provider in ["openai", "anthropic", "openrouter", "groq", "deepseek"] {
            let set = env_var(provider).and_then(|v| std::env::var(v).ok()).is_some_and(|k| !k.is_empty());
            if set && !entries.contains_key(provider) {
                out.push(AuthEntry { provider: provider.to_owned(), kind: "api_key", source: "env" });
            }
        }
        Ok(out)
    }
}
