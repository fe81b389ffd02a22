//! Skills: folders holding a `SKILL.md` (front matter `name` and `description`, then instructions) and the files it
//! refers to, from the global config folder's `skills/` and the project's `.keel/skills/`, `.claude/skills/` and
//! `.opencode/skill(s)/`. A nearer folder's skill replaces a farther one of the same name.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::Paths;

#[derive(Debug, Clone, PartialEq)]
pub struct Skill {
    pub name: String,
    pub description: String,
    /// The skill's `SKILL.md`.
    pub path: PathBuf,
}

pub fn discover(paths: &Paths, cwd: Option<&Path>) -> Vec<Skill> {
    let folders = super::folders(
        paths,
        cwd,
        "skills",
        &[".keel/skills", ".claude/skills", ".opencode/skill", ".opencode/skills"],
    );
    let mut skills: Vec<Skill> = Vec::new();
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        for dir in dirs {
            let path = dir.join("SKILL.md");
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let doc = super::markdown::parse(&text);
            let fallback = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let name = doc.front.get("name").and_then(Value::as_str).map_or(fallback, str::to_owned);
            let description = doc.front.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
            skills.retain(|s| s.name != name);
            skills.push(Skill { name, description, path });
        }
    }
    skills.sort_by(|a, b| a.name.cmp(&b.name));
    skills
}

/// What the `skill` tool answers: the instructions, then the other files of the skill's folder (relative paths),
/// which the model reads with `read` when the instructions point to them.
pub fn load(skill: &Skill) -> std::io::Result<String> {
    let text = std::fs::read_to_string(&skill.path)?;
    let body = super::markdown::parse(&text).body;
    let dir = skill.path.parent().unwrap_or(Path::new("."));
    let mut files = Vec::new();
    for entry in ignore::WalkBuilder::new(dir).max_depth(Some(3)).build().flatten() {
        let path = entry.path();
        if path.is_file() && path != skill.path {
            files.push(path.display().to_string());
        }
    }
    files.sort();
    let mut out = format!("<skill name=\"{}\" folder=\"{}\">\n{body}\n</skill>", skill.name, dir.display());
    if !files.is_empty() {
        out.push_str("\n\nFiles of this skill:\n");
        for file in files.iter().take(200) {
            out.push_str(file);
            out.push('\n');
        }
    }
    Ok(out)
}
