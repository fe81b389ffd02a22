//! `config/set` and `config/unset`: one edit of the global or a project file, validated as the file would load
//! before anything is written, then written atomically.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Config, Paths, edit};

/// Which file an edit goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    Global,
    /// A project directory.
    Project(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The edit would make the file invalid; `at` is the config path (`providers.local.wire`).
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error("{0}")]
    Path(edit::EditError),
    /// The file on disk does not parse now; it is left for its owner to fix.
    #[error("{file}: {message}")]
    Unreadable { file: String, message: String },
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub file: PathBuf,
    pub changed: bool,
}

/// The file an edit of `scope` goes to: the one that exists, else the default name.
pub fn target(paths: &Paths, scope: &Scope) -> PathBuf {
    let (dir, names, default): (&Path, &[&str], &str) = match scope {
        Scope::Global => (&paths.config_dir, &["config.jsonc", "config.json"], "config.jsonc"),
        Scope::Project(dir) => (dir, &["keel.jsonc", "keel.json", ".keel/config.jsonc"], "keel.jsonc"),
    };
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file()).unwrap_or_else(|| dir.join(default))
}

pub fn set(paths: &Paths, scope: &Scope, keys: &[String], value: &Value) -> Result<Written, WriteError> {
    apply(paths, scope, |text| edit::set(text, keys, value).map(Some))
}

pub fn unset(paths: &Paths, scope: &Scope, keys: &[String]) -> Result<Written, WriteError> {
    apply(paths, scope, |text| edit::unset(text, keys))
}

fn apply(
    paths: &Paths,
    scope: &Scope,
    change: impl FnOnce(&str) -> Result<Option<String>, edit::EditError>,
) -> Result<Written, WriteError> {
    let file = target(paths, scope);
    let shown = file.display().to_string();
    let old = match std::fs::read_to_string(&file) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(WriteError::Io { file: shown, source }),
    };
    let base = old.clone().unwrap_or_else(|| "{\n}\n".to_owned());
    let dir = file.parent().map(Path::to_path_buf);
    if let Some(text) = &old {
        super::parse(&shown, text, dir.as_deref())
            .map_err(|e| WriteError::Unreadable { file: shown.clone(), message: e.to_string() })?;
    }
    let new = match change(&base) {
        Ok(Some(new)) => new,
        Ok(None) => return Ok(Written { file, changed: false }),
        Err(e @ edit::EditError::EmptyPath) => return Err(WriteError::Path(e)),
        Err(e) => return Err(WriteError::Unreadable { file: shown, message: e.to_string() }),
    };
    if old.as_deref() == Some(new.as_str()) {
        return Ok(Written { file, changed: false });
    }
    validate(&shown, &new, dir.as_deref())?;
    write_atomic(&file, &new).map_err(|source| WriteError::Io { file: shown, source })?;
    Ok(Written { file, changed: true })
}

/// The new text must load exactly as `load` would read it: substitution, JSONC, then the config types.
fn validate(name: &str, text: &str, dir: Option<&Path>) -> Result<(), WriteError> {
    let value =
        super::parse(name, text, dir).map_err(|e| WriteError::Invalid { at: String::new(), message: e.to_string() })?;
    serde_path_to_error::deserialize::<_, Config>(value).map(|_| ()).map_err(|e| {
        let at = e.path().to_string();
        WriteError::Invalid { at, message: super::scrub(&e.into_inner().to_string()) }
    })
}

/// A temporary file beside the target, renamed over it: a watcher or a turn never reads half a file. The old
/// file's mode is kept.
fn write_atomic(file: &Path, text: &str) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut out = std::fs::File::create(&tmp)?;
    if let Ok(meta) = std::fs::metadata(file) {
        out.set_permissions(std::fs::Permissions::from_mode(meta.permissions().mode()))?;
    }
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn home() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths { config_dir: dir.path().to_owned(), data_dir: dir.path().to_owned() };
        (dir, paths)
    }

    #[test]
    fn an_invalid_value_is_refused_naming_its_path_and_the_file_is_untouched() {
        let (_dir, paths) = home();
        let file = paths.config_dir.join("config.jsonc");
        std::fs::write(&file, "{ // mine\n}").unwrap();
        let keys: Vec<String> = ["providers", "local", "wire"].map(String::from).to_vec();
        match set(&paths, &Scope::Global, &keys, &json!("carrier-pigeon")) {
            Err(WriteError::Invalid { at, message }) => {
                assert_eq!(at, "providers.local.wire");
                assert!(message.contains("unknown variant"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "{ // mine\n}");
        let written = set(&paths, &Scope::Global, &keys, &json!("anthropic")).unwrap();
        assert!(written.changed);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "{ // mine\n  \"providers\": {\n    \"local\": {\n      \"wire\": \"anthropic\"\n    }\n  }\n}"
        );
        assert!(!unset(&paths, &Scope::Global, &["model".into()]).unwrap().changed);
    }

    #[test]
    fn a_missing_file_is_created() {
        let (dir, paths) = home();
        let project = dir.path().join("p");
        std::fs::create_dir_all(&project).unwrap();
        let written = set(&paths, &Scope::Project(project.clone()), &["model".into()], &json!("a/b")).unwrap();
        assert_eq!(written.file, project.join("keel.jsonc"));
        assert_eq!(std::fs::read_to_string(&written.file).unwrap(), "{\n  \"model\": \"a/b\"\n}\n");
    }
}
