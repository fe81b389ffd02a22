//! `keel auth …`, `keel models`, `keel sessions …`: thin views over the engine for people at a terminal.

use std::io::Read;
use std::sync::Arc;

use crate::engine::Engine;
use crate::provider::auth::Credential;

pub fn auth_set(engine: &Engine, provider: &str, key: Option<String>) -> Result<(), String> {
    known_provider(engine, provider)?;
    let key = match key {
        Some(key) => key,
        None => {
            // Read from stdin so the key stays out of shell history and process listings.
            let mut key = String::new();
            std::io::stdin().read_to_string(&mut key).map_err(|e| e.to_string())?;
            key
        }
    };
    let key = key.trim();
    if key.is_empty() {
        return Err("no key given: pass it on stdin".into());
    }
    engine.providers().auth.set(provider, Credential::ApiKey { key: key.to_owned() }).map_err(|e| e.to_string())?;
    println!("stored a key for {provider}");
    Ok(())
}

pub fn auth_list(engine: &Engine) -> Result<(), String> {
    for entry in engine.providers().auth.list().map_err(|e| e.to_string())? {
        println!("{}\t{}\t{}", entry.provider, entry.kind, entry.source);
    }
    Ok(())
}

pub fn auth_remove(engine: &Engine, provider: &str) -> Result<(), String> {
    let removed = engine.providers().auth.remove(provider).map_err(|e| e.to_string())?;
    println!("{}", if removed { "removed" } else { "nothing stored for that provider" });
    Ok(())
}

/// A provider keel knows (built in or configured), or an error that names the ones it does.
fn known_provider(engine: &Engine, provider: &str) -> Result<(), String> {
    let config = engine.config(None);
    let known: Vec<String> = engine.providers().providers(&config).into_iter().map(|p| p.id).collect();
    if known.iter().any(|p| p == provider) {
        return Ok(());
    }
    Err(format!("unknown provider {provider:?}; known: {}", known.join(", ")))
}

pub fn models(engine: &Engine, provider: Option<&str>) -> Result<(), String> {
    if let Some(provider) = provider {
        known_provider(engine, provider)?;
    }
    let config = engine.config(None);
    let providers = engine.providers().providers(&config);
    for model in engine.providers().models(&config) {
        if provider.is_some_and(|p| p != model.provider()) {
            continue;
        }
        let available = providers.iter().any(|p| p.id == model.provider() && engine.providers().authenticated(p));
        println!(
            "{}\t{}\tcontext {}\t${}/${} per Mtok{}",
            model.id,
            model.name,
            model.context_window,
            model.cost.input,
            model.cost.output,
            if available { "" } else { "\t(no credentials)" }
        );
    }
    Ok(())
}

/// `keel models --import FILE`: stores a models.dev catalog and says what it held.
pub fn models_import(engine: &Engine, file: &std::path::Path) -> Result<(), String> {
    let (stored, report) =
        crate::provider::models_dev::import(file, &engine.paths().data_dir).map_err(|e| e.to_string())?;
    println!("imported {} models of {} providers into {}", report.models, report.providers, stored.display());
    for skipped in &report.skipped {
        println!("skipped {skipped}");
    }
    Ok(())
}

/// `keel config import`: the report, then the converted config; with `write`, each converted top-level key set
/// in the global config.
pub fn config_import(
    paths: &crate::config::Paths,
    from: Option<crate::config::import::Source>,
    file: Option<&std::path::Path>,
    write: bool,
) -> Result<(), String> {
    use crate::config::write::{self, Scope};
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    let (file, conversion) = crate::config::import::import(from, file, &cwd).map_err(|e| e.to_string())?;
    println!("imported {}", file.display());
    for line in &conversion.mapped {
        println!("  mapped      {line}");
    }
    for line in &conversion.unmapped {
        println!("  not mapped  {line}");
    }
    println!("{}", serde_json::to_string_pretty(&conversion.config).unwrap_or_default());
    if write {
        for (key, value) in conversion.config.as_object().into_iter().flatten() {
            let written = write::set(paths, &Scope::Global, std::slice::from_ref(key), value)
                .map_err(|e| format!("{key} not written: {e}"))?;
            println!("wrote {key} into {}", written.file.display());
        }
    }
    Ok(())
}

pub fn sessions_list(engine: &Engine) -> Result<(), String> {
    let page = engine.sessions.list(&crate::store::SessionFilter::default(), None, 500).map_err(|e| e.to_string())?;
    for s in page.sessions {
        println!("{}\t{}\t{}\t{}", s.id, keel_protocol::wire_name(&s.status), s.cwd, s.title);
    }
    Ok(())
}

pub fn session_show(engine: &Engine, id: &str) -> Result<(), String> {
    let s = engine.sessions.get(id).map_err(|e| e.to_string())?;
    println!(
        "id: {}\ntitle: {}\ncwd: {}\nagent: {}\nmodel: {}\nstatus: {}\nevents: {}",
        s.id,
        s.title,
        s.cwd,
        s.agent,
        s.model,
        keel_protocol::wire_name(&s.status),
        s.head_seq
    );
    println!("tokens: {} in, {} out; cost ${:.4}", s.input_tokens, s.output_tokens, s.cost_usd);
    Ok(())
}

/// Prints events as NDJSON; with `follow`, keeps printing as they commit.
pub async fn session_events(engine: Arc<Engine>, id: &str, after: u64, follow: bool) -> Result<(), String> {
    let mut follower = engine.follow(id, Some(after)).map_err(|e| e.to_string())?;
    while let Some(events) = follower.next_page(512, follow).await.map_err(|e| e.to_string())? {
        for e in events {
            println!("{}", crate::api::event_line(&e));
        }
    }
    Ok(())
}
