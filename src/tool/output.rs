//! The session-owned store for tool output too large to show the model in full. The model gets a preview and a
//! handle (`keel-output:ID`) it can page through with `read`; only the session that produced it can read it.

use std::path::{Path, PathBuf};

pub const HANDLE_PREFIX: &str = "keel-output:";

/// Limits of what the model sees of one tool result.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_lines: usize,
    pub max_bytes: usize,
}

impl Limits {
    /// For output its tool already bounded.
    pub const UNBOUNDED: Limits = Limits { max_lines: usize::MAX, max_bytes: usize::MAX };
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_lines: 2000, max_bytes: 50 * 1024 }
    }
}

/// The output as the model sees it, and whether it was cut.
pub fn fit(output: String, limits: Limits, dir: &Path) -> (String, bool) {
    let lines = output.lines().count();
    if lines <= limits.max_lines && output.len() <= limits.max_bytes {
        return (output, false);
    }
    let id = uuid::Uuid::now_v7().simple().to_string();
    let saved = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(dir.join(format!("{id}.txt")), &output));
    let mut preview = String::new();
    for line in output.lines().take(limits.max_lines.min(200)) {
        if preview.len() + line.len() + 1 > limits.max_bytes.min(16 * 1024) {
            break;
        }
        preview.push_str(line);
        preview.push('\n');
    }
    let note = match saved {
        Ok(()) => format!(
            "\n[output truncated: {lines} lines, {} bytes. The full output is saved as {HANDLE_PREFIX}{id}; \
             read it with the read tool (filePath \"{HANDLE_PREFIX}{id}\", offset, limit).]",
            output.len()
        ),
        Err(e) => format!("\n[output truncated: {lines} lines, {} bytes; saving the rest failed: {e}]", output.len()),
    };
    preview.push_str(&note);
    (preview, true)
}

/// The file behind a handle, if it names one of this session's outputs.
pub fn resolve(dir: &Path, handle: &str) -> Option<PathBuf> {
    let id = handle.strip_prefix(HANDLE_PREFIX)?;
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let path = dir.join(format!("{id}.txt"));
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_outputs_are_saved_and_resolvable_only_by_handle() {
        let dir = tempfile::tempdir().unwrap();
        let small = "a\nb\n".to_owned();
        assert_eq!(fit(small.clone(), Limits::default(), dir.path()), (small, false));
        let big: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        let (preview, cut) = fit(big.clone(), Limits::default(), dir.path());
        assert!(cut && preview.len() < 20_000, "{}", preview.len());
        let handle = preview.split(HANDLE_PREFIX).nth(1).unwrap().split(';').next().unwrap();
        let path = resolve(dir.path(), &format!("{HANDLE_PREFIX}{handle}")).unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), big);
        assert!(resolve(dir.path(), "keel-output:../../etc/passwd").is_none());
    }
}
