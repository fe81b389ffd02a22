//! `glob`: files by name pattern, newest first.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use globset::GlobMatcher;
use ignore::{DirEntry, WalkState};
use parking_lot::Mutex;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{
    Found, MAX_RESULTS, SearchError, TIMEOUT, compile_glob, display_path, relative_or_name, render, resolve,
    run_blocking, walker,
};
use crate::provider::BoxFuture;
use crate::tool::{ToolContext, ToolError, ToolOutput, TypedTool};

pub struct Glob;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobInput {
    /// Glob matched against file paths below `path`, e.g. "**/*.rs" or "src/**/mod.rs"; a pattern without "/"
    /// matches file names at any depth ("*.toml" is "**/*.toml").
    pattern: String,
    /// Directory to search, relative to the workspace or absolute inside it. Defaults to the workspace.
    path: Option<String>,
}

impl TypedTool for Glob {
    fn idempotent(&self) -> bool {
        true
    }

    type Input = GlobInput;

    fn name(&self) -> &'static str {
        "glob"
    }

    fn description(&self) -> &'static str {
        "Find files by name with a glob such as \"**/*.rs\" or \"src/**/test_*.py\", honouring .gitignore and \
         skipping hidden files. Returns workspace-relative paths, most recently modified first, at most 100. Use it \
         to locate files; use `grep` to search their contents."
    }

    fn execute<'a>(&'a self, input: Self::Input, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let (base, root) = resolve(&ctx.cwd, input.path.as_deref())?;
            let found = run_blocking(self.name(), &ctx.cancel, TIMEOUT, move |stop| {
                glob_files(&root, &base, &input.pattern, MAX_RESULTS, &stop)
            })
            .await?;
            Ok(render(found, "No files found", "(showing the 100 most recently modified files; narrow the pattern)"))
        })
    }
}

/// Files under `root` whose path relative to `root` matches `pattern`, newest first, paths relative to `base`.
fn glob_files(
    root: &Path,
    base: &Path,
    pattern: &str,
    max: usize,
    stop: &CancellationToken,
) -> Result<Found, SearchError> {
    let matcher = compile_glob(pattern)?;
    let found = Mutex::new(Vec::new());
    walker(root).build_parallel().run(|| {
        let mut worker = GlobWorker { root, matcher: &matcher, stop, found: Vec::new(), sink: &found };
        Box::new(move |entry| worker.visit(entry))
    });
    if stop.is_cancelled() {
        return Err(SearchError::Stopped);
    }
    let mut found = found.into_inner();
    // Newest first puts what is being worked on at the top; the path breaks ties so output is stable.
    found.sort_unstable_by(|a: &(SystemTime, PathBuf), b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let truncated = found.len() > max;
    let lines = found.into_iter().take(max).map(|(_, path)| display_path(&path, base)).collect();
    Ok(Found { lines, truncated })
}

/// One walker thread's matches, gathered without locking and handed over once when the thread finishes.
struct GlobWorker<'s> {
    root: &'s Path,
    matcher: &'s GlobMatcher,
    stop: &'s CancellationToken,
    found: Vec<(SystemTime, PathBuf)>,
    sink: &'s Mutex<Vec<(SystemTime, PathBuf)>>,
}

impl GlobWorker<'_> {
    fn visit(&mut self, entry: Result<DirEntry, ignore::Error>) -> WalkState {
        if self.stop.is_cancelled() {
            return WalkState::Quit;
        }
        let Ok(entry) = entry else { return WalkState::Continue };
        if entry.file_type().is_some_and(|t| t.is_file())
            && self.matcher.is_match(relative_or_name(entry.path(), self.root))
        {
            let modified = entry.metadata().ok().and_then(|m| m.modified().ok()).unwrap_or(SystemTime::UNIX_EPOCH);
            self.found.push((modified, entry.into_path()));
        }
        WalkState::Continue
    }
}

impl Drop for GlobWorker<'_> {
    fn drop(&mut self) {
        self.sink.lock().append(&mut self.found);
    }
}

#[cfg(test)]
mod tests {
    use crate::tool::Tool;
    use std::fs;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::tool::search::test_support::{ctx, write};

    #[tokio::test]
    async fn glob_matches_at_any_depth_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".gitignore", "gen/\n");
        write(dir.path(), "old.rs", "");
        write(dir.path(), "src/new.rs", "");
        write(dir.path(), "src/readme.md", "");
        write(dir.path(), "gen/skip.rs", "");
        let old = fs::File::options().write(true).open(dir.path().join("old.rs")).unwrap();
        old.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)).unwrap();
        let out = Glob.run(json!({ "pattern": "*.rs" }), ctx(dir.path())).await.unwrap();
        assert_eq!(out.output, "src/new.rs\nold.rs\n");
        let out = Glob.run(json!({ "pattern": "src/*" }), ctx(dir.path())).await.unwrap();
        assert_eq!(out.output.lines().count(), 2);
        let out = Glob.run(json!({ "pattern": "*.rs", "path": "src" }), ctx(dir.path())).await.unwrap();
        assert_eq!(out.output, "src/new.rs\n");
        let out = Glob.run(json!({ "pattern": "*.py" }), ctx(dir.path())).await.unwrap();
        assert_eq!(out.output, "No files found\n");
        let err = Glob.run(json!({ "pattern": "a[" }), ctx(dir.path())).await.unwrap_err();
        assert!(matches!(err, ToolError::InvalidInput { .. }));
    }

    #[tokio::test]
    async fn glob_limits_to_100() {
        let dir = tempfile::tempdir().unwrap();
        for f in 0..120 {
            write(dir.path(), &format!("d/f{f:03}.txt"), "");
        }
        let out = Glob.run(json!({ "pattern": "*.txt" }), ctx(dir.path())).await.unwrap();
        assert!(out.truncated);
        assert_eq!(out.output.lines().count(), 101);
        assert!(out.output.ends_with("narrow the pattern)\n"));
    }
}
