//! Where keel keeps its files: `KEEL_HOME`, or the XDG directories.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl Paths {
    /// Creates the data directory, private (0700) also when it existed wider: it holds credentials and, on SQLite,
    /// every prompt and answer.
    pub fn private_data_dir(&self) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.data_dir)?;
        std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700))
    }

    pub fn from_env() -> Self {
        if let Some(home) = std::env::var_os("KEEL_HOME").filter(|h| !h.is_empty()) {
            let home = PathBuf::from(home);
            return Self { config_dir: home.clone(), data_dir: home };
        }
        let user_home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        let xdg = |var: &str, fallback: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| user_home.join(fallback))
                .join("keel")
        };
        Self { config_dir: xdg("XDG_CONFIG_HOME", ".config"), data_dir: xdg("XDG_DATA_HOME", ".local/share") }
    }
}

/// The project folders of a session in `cwd`, from the project root down to `cwd`: the root is the nearest
/// ancestor holding `.git` (a repository), or `cwd` itself outside one. Nothing above the root is the project's, so
/// a stray `keel.jsonc` or `opencode.json` in a home folder or `/tmp` changes nothing.
pub fn project_chain(cwd: &std::path::Path) -> Vec<PathBuf> {
    let root = cwd.ancestors().find(|d| d.join(".git").exists()).unwrap_or(cwd);
    let mut chain: Vec<PathBuf> = cwd.ancestors().take_while(|d| d.starts_with(root)).map(PathBuf::from).collect();
    chain.reverse();
    chain
}
