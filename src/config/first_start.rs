//! The first start of a keel home: someone coming from opencode or codex finds their models and providers in
//! place. When the home does not exist yet and has no global config, the user's opencode config (else codex's) is
//! converted into a new global `config.jsonc` whose header says what was carried over and what was not; that file's
//! existence is what keeps this from happening twice.

use std::path::{Path, PathBuf};

use super::Paths;
use super::import::{self, Conversion, Source};

/// What the first start imported: the source, the config written and the conversion's report.
#[derive(Debug)]
pub struct Imported {
    pub from: PathBuf,
    pub written: PathBuf,
    pub mapped: usize,
    pub unmapped: usize,
}

/// Whether `paths` is a home keel never started in: nothing of its own there yet.
pub fn is_first_start(paths: &Paths) -> bool {
    !paths.data_dir.exists() && !super::write::target(paths, &super::write::Scope::Global).exists()
}

/// Imports the user's opencode or codex config into a new global config, on a first start only. `Ok(None)` when
/// this is not a first start or there is nothing to import; an error leaves no file behind.
pub fn import_on_first_start(paths: &Paths) -> Result<Option<Imported>, String> {
    if !is_first_start(paths) || std::env::var_os("KEEL_NO_IMPORT").is_some() {
        return Ok(None);
    }
    let Some((from, conversion)) = [Source::Opencode, Source::Codex]
        .into_iter()
        .find_map(|source| import::user_file(source).map(|file| (source, file)))
        .map(|(source, file)| import::import(Some(source), Some(&file), Path::new("/")))
        .transpose()
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let text = config_text(&from, &conversion)?;
    std::fs::create_dir_all(&paths.config_dir).map_err(|e| format!("{}: {e}", paths.config_dir.display()))?;
    let written = super::write::target(paths, &super::write::Scope::Global);
    std::fs::write(&written, text).map_err(|e| format!("{}: {e}", written.display()))?;
    Ok(Some(Imported { from, written, mapped: conversion.mapped.len(), unmapped: conversion.unmapped.len() }))
}

/// The converted config as JSONC, its report in the header; checked against keel's config first so that a
/// conversion that produced something keel would refuse is never written.
fn config_text(from: &Path, conversion: &Conversion) -> Result<String, String> {
    serde_json::from_value::<super::Config>(conversion.config.clone())
        .map_err(|e| format!("the config converted from {} is not valid: {e}", from.display()))?;
    let mut text = format!("// Imported from {} on keel's first start.\n", from.display());
    for line in &conversion.mapped {
        text.push_str(&format!("//   mapped      {line}\n"));
    }
    for line in &conversion.unmapped {
        text.push_str(&format!("//   not mapped  {line}\n"));
    }
    let body = serde_json::to_string_pretty(&conversion.config).map_err(|e| e.to_string())?;
    Ok(text + &body + "\n")
}
