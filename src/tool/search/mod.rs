//! `grep`, `glob` and `list`: read-only search of the session's workspace, in process with ripgrep's crates.
//!
//! Each tool resolves its `path` inside the workspace (anything outside is refused; the permission layer deals with
//! external directories before a tool runs), walks with `ignore` so `.gitignore`, `.ignore` and hidden files are
//! honoured as ripgrep would, and caps its output so one call can never flood the model's context. The walks are
//! blocking filesystem work, so they run on the blocking pool and stop when the activity is interrupted or the call
//! times out.

mod glob;
mod grep;
mod list;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};
use ignore::WalkBuilder;
use tokio_util::sync::CancellationToken;

use super::{ToolError, ToolOutput};

pub use glob::Glob;
pub use grep::{Grep, grep_tree};
pub use list::List;

/// How many matches, files or entries one call returns.
const MAX_RESULTS: usize = 100;
/// Longer matched lines (minified code, data) are cut so one line cannot fill the context.
const MAX_LINE_CHARS: usize = 2000;
/// A walk over a huge tree should fail with advice rather than hold the turn.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Why a search could not produce results.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SearchError {
    #[error("invalid regex: {0}")]
    Regex(String),
    #[error("invalid glob {pattern:?}: {message}")]
    Glob { pattern: String, message: String },
    /// The stop token was cancelled (interruption or timeout) before the walk finished.
    #[error("search stopped")]
    Stopped,
}

impl SearchError {
    pub(super) fn into_tool_error(self, tool: &str) -> ToolError {
        match self {
            Self::Regex(_) | Self::Glob { .. } => {
                ToolError::InvalidInput { tool: tool.to_owned(), message: self.to_string() }
            }
            Self::Stopped => ToolError::Interrupted,
        }
    }
}

/// Lines for the model, and whether more existed than were kept.
struct Found {
    lines: Vec<String>,
    truncated: bool,
}

fn walker(root: &Path) -> WalkBuilder {
    let mut builder = WalkBuilder::new(root);
    // A workspace need not be a git checkout; its .gitignore still says what is noise.
    builder.require_git(false);
    builder.threads(std::thread::available_parallelism().map_or(1, |n| n.get()));
    builder
}

/// A glob matched against slash-separated relative paths; without a "/" it matches at any depth, as in .gitignore.
fn compile_glob(pattern: &str) -> Result<GlobMatcher, SearchError> {
    let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
    let full = if pattern.contains('/') { pattern.to_owned() } else { format!("**/{pattern}") };
    GlobBuilder::new(&full)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| SearchError::Glob { pattern: pattern.to_owned(), message: e.kind().to_string() })
}

/// `path` below `root`; the file name when `path` is `root` itself (a single searched file).
fn relative_or_name<'p>(path: &'p Path, root: &Path) -> &'p Path {
    match path.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel,
        _ => path.file_name().map_or(path, Path::new),
    }
}

/// How a path is shown to the model: relative to the workspace, "." for the workspace itself.
fn display_path(path: &Path, base: &Path) -> String {
    match path.strip_prefix(base) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".to_owned(),
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => path.to_string_lossy().into_owned(),
    }
}

fn render(found: Found, empty: &str, note: &str) -> ToolOutput {
    if found.lines.is_empty() {
        return ToolOutput { output: format!("{empty}\n"), truncated: false };
    }
    let mut output = found.lines.join("\n");
    output.push('\n');
    if found.truncated {
        output.push_str(note);
        output.push('\n');
    }
    ToolOutput { output, truncated: found.truncated }
}

/// Resolves an input path against the workspace: returns the canonical workspace and the canonical target, or
/// refuses a target outside the workspace (also through symlinks).
fn resolve(cwd: &Path, path: Option<&str>) -> Result<(PathBuf, PathBuf), ToolError> {
    let workspace = cwd
        .canonicalize()
        .map_err(|e| ToolError::Failed(format!("workspace {} is not accessible: {e}", cwd.display())))?;
    let Some(raw) = path.filter(|p| !p.trim().is_empty()) else { return Ok((workspace.clone(), workspace)) };
    // Checked before touching the filesystem, so a missing outside path is still reported as outside.
    let joined = match super::fs::locate(cwd, raw) {
        super::fs::Target::Inside(rel) => cwd.join(rel),
        super::fs::Target::Outside(abs) if abs.starts_with(&workspace) => abs,
        super::fs::Target::Outside(_) => return Err(outside(raw)),
    };
    // Symlinks are resolved here; the walk itself only reads what lies below the resolved root.
    let target = joined.canonicalize().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ToolError::Failed(format!("{raw} does not exist")),
        _ => ToolError::Failed(format!("{raw} is not accessible: {e}")),
    })?;
    if !target.starts_with(&workspace) {
        return Err(outside(raw));
    }
    Ok((workspace, target))
}

fn outside(raw: &str) -> ToolError {
    ToolError::Failed(format!("{raw} is outside the workspace"))
}

/// Runs blocking search work on the blocking pool. The work gets a stop token that is cancelled when the activity
/// is interrupted, when `timeout` passes, or when this future is dropped, so an abandoned walk ends soon after.
async fn run_blocking<T, F>(
    tool: &'static str,
    cancel: &CancellationToken,
    timeout: Duration,
    work: F,
) -> Result<T, ToolError>
where
    T: Send + 'static,
    F: FnOnce(CancellationToken) -> Result<T, SearchError> + Send + 'static,
{
    let stop = cancel.child_token();
    let _stop_on_exit = stop.clone().drop_guard();
    let task = tokio::task::spawn_blocking(move || work(stop));
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(ToolError::Interrupted),
        joined = task => match joined {
            Ok(result) => result.map_err(|e| e.into_tool_error(tool)),
            Err(e) => Err(ToolError::Failed(format!("{tool} failed: {e}"))),
        },
        () = tokio::time::sleep(timeout) => Err(ToolError::Failed(format!(
            "{tool} timed out after {}s; narrow the path or pattern",
            timeout.as_secs()
        ))),
    }
}

#[cfg(test)]
mod test_support {
    use std::fs;
    use std::path::Path;

    use tokio_util::sync::CancellationToken;

    use crate::tool::ToolContext;

    pub(super) fn ctx(dir: &Path) -> ToolContext {
        ToolContext {
            session_id: "s".into(),
            call_id: "c".into(),
            cwd: dir.to_path_buf(),
            output_dir: dir.join(".keel-output"),
            cancel: CancellationToken::new(),
            sandbox: Default::default(),
        }
    }

    pub(super) fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timeout_stops_the_work() {
        let cancel = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let err = run_blocking("grep", &cancel, Duration::from_millis(20), move |stop| {
            while !stop.is_cancelled() {
                std::thread::sleep(Duration::from_millis(1));
            }
            tx.send(()).unwrap();
            Err::<(), _>(SearchError::Stopped)
        })
        .await
        .unwrap_err();
        assert_eq!(err, ToolError::Failed("grep timed out after 0s; narrow the path or pattern".into()));
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
    }
}
