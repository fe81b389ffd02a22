//! Instruction files for the system prompt: `AGENTS.md` (or `CLAUDE.md` where a folder has no `AGENTS.md`) of the
//! global config folder and of every folder from the project root (the nearest ancestor with `.git`, else the
//! session's directory) down to the session's directory, then config's `instructions`.

use std::path::{Path, PathBuf};

use crate::config::{Config, Paths};

/// Files larger than this are cut.
const MAX_FILE: usize = 50 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    pub path: PathBuf,
    pub text: String,
}

pub fn discover(config: &Config, paths: &Paths, cwd: &Path) -> Vec<Instruction> {
    let mut found: Vec<Instruction> = Vec::new();
    let mut add = |path: PathBuf| {
        if found.iter().any(|i| i.path == path) {
            return true;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let text = crate::session::context::truncate(&text, MAX_FILE).to_owned();
                found.push(Instruction { path, text });
                true
            }
            Err(_) => false,
        }
    };
    let mut folders = vec![paths.config_dir.clone()];
    folders.extend(crate::config::paths::project_chain(cwd));
    for folder in folders {
        if !add(folder.join("AGENTS.md")) {
            add(folder.join("CLAUDE.md"));
        }
    }
    for file in &config.instructions {
        add(cwd.join(file));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_the_global_folder_and_the_project_root_down() {
        let dir = std::env::temp_dir().join(format!("keel-instructions-{}", std::process::id()));
        let (global, root) = (dir.join("global"), dir.join("repo"));
        let sub = root.join("crates/a");
        std::fs::create_dir_all(&global).unwrap();
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(global.join("AGENTS.md"), "global").unwrap();
        std::fs::write(dir.join("AGENTS.md"), "outside the project").unwrap();
        std::fs::write(root.join("AGENTS.md"), "root").unwrap();
        std::fs::write(root.join("CLAUDE.md"), "shadowed by AGENTS.md").unwrap();
        std::fs::write(sub.join("CLAUDE.md"), "crate").unwrap();
        std::fs::write(sub.join("STYLE.md"), "style").unwrap();
        let paths = Paths { config_dir: global, data_dir: dir.clone() };
        let config = Config { instructions: vec!["STYLE.md".into(), "missing.md".into()], ..Default::default() };
        let texts: Vec<String> = discover(&config, &paths, &sub).into_iter().map(|i| i.text).collect();
        assert_eq!(texts, ["global", "root", "crate", "style"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
