//! `grep`: regex search of file contents, in parallel over a walk that honours ignore files, sorted by path.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use globset::GlobMatcher;
use grep::regex::{RegexMatcher, RegexMatcherBuilder};
use grep::searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkMatch};
use ignore::{DirEntry, WalkState};
use parking_lot::Mutex;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{
    Found, MAX_LINE_CHARS, MAX_RESULTS, SearchError, TIMEOUT, compile_glob, display_path, relative_or_name, render,
    resolve, run_blocking, walker,
};
use crate::provider::BoxFuture;
use crate::tool::{ToolContext, ToolError, ToolOutput, TypedTool};

pub struct Grep;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrepInput {
    /// Regular expression (Rust regex syntax, as ripgrep) searched for in each line.
    pattern: String,
    /// Directory or file to search, relative to the workspace or absolute inside it. Defaults to the workspace.
    path: Option<String>,
    /// Only search files matching this glob, e.g. "*.rs" or "*.{ts,tsx}"; with a "/" it matches the path below
    /// the searched directory, e.g. "src/**/*.rs".
    include: Option<String>,
    /// Match letters regardless of case. Defaults to false.
    case_insensitive: Option<bool>,
}

/// One `grep` request in terms of paths already resolved inside the workspace.
struct GrepQuery<'a> {
    /// Where the walk starts.
    root: &'a Path,
    /// What printed paths are relative to.
    base: &'a Path,
    pattern: &'a str,
    include: Option<&'a str>,
    case_insensitive: bool,
    max: usize,
}

/// Searches every file under `root` for `pattern` and returns up to `max` lines `path:line: text`, sorted by path
/// then line, paths relative to `root`. The public core of the `grep` tool, for benchmarks.
pub fn grep_tree(root: &Path, pattern: &str, max: usize) -> Result<Vec<String>, SearchError> {
    let query = GrepQuery { root, base: root, pattern, include: None, case_insensitive: false, max };
    search_lines(&query, &CancellationToken::new()).map(|found| found.lines)
}

impl TypedTool for Grep {
    fn idempotent(&self) -> bool {
        true
    }

    type Input = GrepInput;

    fn name(&self) -> &'static str {
        "grep"
    }

    fn description(&self) -> &'static str {
        "Search file contents with a regular expression (ripgrep syntax), honouring .gitignore and skipping hidden \
         and binary files. Returns matching lines as `path:line: text`, sorted by path, at most 100. Narrow with \
         `path` (a directory or file) and `include` (a glob such as \"*.rs\"). Use it to find definitions, uses \
         and strings; use `glob` to find files by name."
    }

    fn execute<'a>(&'a self, input: Self::Input, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let (base, root) = resolve(&ctx.cwd, input.path.as_deref())?;
            let found = run_blocking(self.name(), &ctx.cancel, TIMEOUT, move |stop| {
                let query = GrepQuery {
                    root: &root,
                    base: &base,
                    pattern: &input.pattern,
                    include: input.include.as_deref(),
                    case_insensitive: input.case_insensitive.unwrap_or(false),
                    max: MAX_RESULTS,
                };
                search_lines(&query, &stop)
            })
            .await?;
            Ok(render(found, "No matches", "(showing the first 100 matches; narrow the search)"))
        })
    }
}

/// One matched line, kept structured until the end so the output can be sorted.
struct Hit {
    path: String,
    line: u64,
    text: String,
}

/// What the walker threads share.
struct GrepShared<'a> {
    root: &'a Path,
    base: &'a Path,
    include: Option<GlobMatcher>,
    /// How many hits to keep: one more than shown, which tells "limit hit" apart from "exactly the limit".
    limit: usize,
    /// Hits claimed so far across threads; once it reaches `limit` every thread quits.
    taken: AtomicUsize,
    hits: Mutex<Vec<Hit>>,
    stop: &'a CancellationToken,
}

fn search_lines(query: &GrepQuery<'_>, stop: &CancellationToken) -> Result<Found, SearchError> {
    let matcher = build_matcher(query.pattern, query.case_insensitive)?;
    let shared = GrepShared {
        root: query.root,
        base: query.base,
        include: query.include.map(compile_glob).transpose()?,
        limit: query.max.saturating_add(1),
        taken: AtomicUsize::new(0),
        hits: Mutex::new(Vec::new()),
        stop,
    };
    walker(query.root).build_parallel().run(|| {
        let mut worker = GrepWorker::new(&shared, matcher.clone());
        Box::new(move |entry| worker.visit(entry))
    });
    if stop.is_cancelled() {
        return Err(SearchError::Stopped);
    }
    let mut hits = shared.hits.into_inner();
    hits.sort_unstable_by(|a, b| a.path.cmp(&b.path).then(a.line.cmp(&b.line)));
    let truncated = hits.len() > query.max;
    hits.truncate(query.max);
    let lines = hits.into_iter().map(|h| format!("{}:{}: {}", h.path, h.line, h.text)).collect();
    Ok(Found { lines, truncated })
}

fn build_matcher(pattern: &str, case_insensitive: bool) -> Result<RegexMatcher, SearchError> {
    RegexMatcherBuilder::new()
        .case_insensitive(case_insensitive)
        // Declaring the line terminator lets the searcher scan whole buffers instead of line by line.
        .line_terminator(Some(b'\n'))
        .build(pattern)
        .map_err(|e| SearchError::Regex(e.to_string()))
}

/// One walker thread's state: its own searcher (which owns the read buffer) and matcher, reused for every file.
struct GrepWorker<'s> {
    shared: &'s GrepShared<'s>,
    searcher: Searcher,
    matcher: RegexMatcher,
    sink: FileSink,
}

impl<'s> GrepWorker<'s> {
    fn new(shared: &'s GrepShared<'s>, matcher: RegexMatcher) -> Self {
        let searcher = SearcherBuilder::new()
            .line_number(true)
            // Quitting at the first NUL skips binary files the way ripgrep does when walking a tree.
            .binary_detection(BinaryDetection::quit(b'\0'))
            .build();
        Self { shared, searcher, matcher, sink: FileSink::new(shared.stop.clone()) }
    }

    fn visit(&mut self, entry: Result<DirEntry, ignore::Error>) -> WalkState {
        let shared = self.shared;
        if shared.stop.is_cancelled() || shared.taken.load(Ordering::Relaxed) >= shared.limit {
            return WalkState::Quit;
        }
        // Unreadable entries are skipped silently, as `rg --no-messages` does; the model cannot act on them.
        let Ok(entry) = entry else { return WalkState::Continue };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            return WalkState::Continue;
        }
        if let Some(include) = &shared.include
            && !include.is_match(relative_or_name(entry.path(), shared.root))
        {
            return WalkState::Continue;
        }
        self.sink.reset(shared.limit.saturating_sub(shared.taken.load(Ordering::Relaxed)));
        if self.searcher.search_path(&self.matcher, entry.path(), &mut self.sink).is_err()
            || self.sink.binary
            || self.sink.lines.is_empty()
        {
            return WalkState::Continue;
        }
        self.commit(entry.path())
    }

    /// Claims room for this file's hits under the shared limit and publishes what fits.
    fn commit(&mut self, path: &Path) -> WalkState {
        let shared = self.shared;
        let count = self.sink.lines.len();
        let before = shared.taken.fetch_add(count, Ordering::Relaxed);
        let keep = shared.limit.saturating_sub(before).min(count);
        if keep > 0 {
            let path = display_path(path, shared.base);
            let mut hits = shared.hits.lock();
            for (line, text) in self.sink.lines.drain(..keep) {
                hits.push(Hit { path: path.clone(), line, text });
            }
        }
        if before + count >= shared.limit { WalkState::Quit } else { WalkState::Continue }
    }
}

/// Collects one file's matches. They are held until the file is done because a NUL byte found after a match
/// still makes the file binary, and binary files are skipped whole.
struct FileSink {
    lines: Vec<(u64, String)>,
    budget: usize,
    binary: bool,
    stop: CancellationToken,
}

impl FileSink {
    fn new(stop: CancellationToken) -> Self {
        Self { lines: Vec::new(), budget: 0, binary: false, stop }
    }

    fn reset(&mut self, budget: usize) {
        self.lines.clear();
        self.budget = budget;
        self.binary = false;
    }
}

impl Sink for FileSink {
    type Error = io::Error;

    fn matched(&mut self, _: &Searcher, mat: &SinkMatch<'_>) -> Result<bool, io::Error> {
        if self.lines.len() >= self.budget {
            return Ok(false);
        }
        self.lines.push((mat.line_number().unwrap_or(0), cut_line(mat.bytes())));
        Ok(self.lines.len() < self.budget && !self.stop.is_cancelled())
    }

    fn binary_data(&mut self, _: &Searcher, _: u64) -> Result<bool, io::Error> {
        self.binary = true;
        Ok(false)
    }
}

/// The matched line without its terminator, at most `MAX_LINE_CHARS` characters, invalid UTF-8 replaced.
fn cut_line(bytes: &[u8]) -> String {
    let line = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // No character takes more than 4 bytes, so this prefix always holds the characters kept and a huge minified
    // line is not decoded whole.
    let prefix = &line[..line.len().min(MAX_LINE_CHARS * 4)];
    let text = String::from_utf8_lossy(prefix);
    match text.char_indices().nth(MAX_LINE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use crate::tool::Tool;
    use std::path::Path;

    use serde_json::{Value, json};

    use super::*;
    use crate::tool::search::test_support::{ctx, write};

    async fn grep(dir: &Path, input: Value) -> Result<ToolOutput, ToolError> {
        Grep.run(input, ctx(dir)).await
    }

    #[tokio::test]
    async fn grep_reports_paths_and_line_numbers_sorted() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "src/b.rs", "fn b() {}\nlet x = 1;\nfn bb() {}\n");
        write(dir.path(), "src/a.rs", "// nothing\nfn a() {}\n");
        let out = grep(dir.path(), json!({ "pattern": r"fn \w+" })).await.unwrap();
        assert_eq!(out.output, "src/a.rs:2: fn a() {}\nsrc/b.rs:1: fn b() {}\nsrc/b.rs:3: fn bb() {}\n");
        assert!(!out.truncated);
    }

    #[tokio::test]
    async fn grep_says_no_matches() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.txt", "hello\n");
        let out = grep(dir.path(), json!({ "pattern": "absent" })).await.unwrap();
        assert_eq!(out.output, "No matches\n");
    }

    #[tokio::test]
    async fn grep_honours_gitignore_hidden_and_binary_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".gitignore", "ignored/\n*.log\n");
        write(dir.path(), "ignored/x.rs", "needle\n");
        write(dir.path(), "run.log", "needle\n");
        write(dir.path(), ".hidden/x.rs", "needle\n");
        write(dir.path(), "blob.bin", "needle\n\0\0binary");
        write(dir.path(), "kept.rs", "needle\n");
        let out = grep(dir.path(), json!({ "pattern": "needle" })).await.unwrap();
        assert_eq!(out.output, "kept.rs:1: needle\n");
    }

    #[tokio::test]
    async fn grep_include_filters_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.rs", "needle\n");
        write(dir.path(), "deep/b.rs", "needle\n");
        write(dir.path(), "c.md", "needle\n");
        let out = grep(dir.path(), json!({ "pattern": "needle", "include": "*.rs" })).await.unwrap();
        assert_eq!(out.output, "a.rs:1: needle\ndeep/b.rs:1: needle\n");
        let out = grep(dir.path(), json!({ "pattern": "needle", "include": "*.{md,txt}" })).await.unwrap();
        assert_eq!(out.output, "c.md:1: needle\n");
    }

    #[tokio::test]
    async fn grep_case_insensitive() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.txt", "Needle\nneedle\n");
        let out = grep(dir.path(), json!({ "pattern": "NEEDLE" })).await.unwrap();
        assert_eq!(out.output, "No matches\n");
        let out = grep(dir.path(), json!({ "pattern": "NEEDLE", "caseInsensitive": true })).await.unwrap();
        assert_eq!(out.output, "a.txt:1: Needle\na.txt:2: needle\n");
    }

    #[tokio::test]
    async fn grep_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        for f in 0..30 {
            write(dir.path(), &format!("f{f:02}.txt"), &"hit\n".repeat(10));
        }
        let out = grep(dir.path(), json!({ "pattern": "hit" })).await.unwrap();
        assert!(out.truncated);
        let lines: Vec<&str> = out.output.lines().collect();
        assert_eq!(lines.len(), 101);
        assert_eq!(lines[100], "(showing the first 100 matches; narrow the search)");
        let mut sorted = lines[..100].to_vec();
        sorted.sort_by_key(|l| {
            let (path, rest) = l.split_once(':').unwrap();
            (path.to_owned(), rest.split_once(':').unwrap().0.parse::<u64>().unwrap())
        });
        assert_eq!(sorted, lines[..100]);
    }

    #[tokio::test]
    async fn grep_exactly_the_limit_is_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.txt", &"hit\n".repeat(100));
        let out = grep(dir.path(), json!({ "pattern": "hit" })).await.unwrap();
        assert!(!out.truncated);
        assert_eq!(out.output.lines().count(), 100);
    }

    #[tokio::test]
    async fn grep_cuts_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "min.js", &format!("{}needle{}\n", "é".repeat(1990), "x".repeat(50_000)));
        let out = grep(dir.path(), json!({ "pattern": "needle" })).await.unwrap();
        let text = out.output.trim_end().strip_prefix("min.js:1: ").unwrap();
        assert_eq!(text.chars().count(), MAX_LINE_CHARS + 1);
        assert!(text.ends_with("xxx…"));
    }

    #[tokio::test]
    async fn grep_rejects_an_invalid_regex() {
        let dir = tempfile::tempdir().unwrap();
        let err = grep(dir.path(), json!({ "pattern": "fn (" })).await.unwrap_err();
        match err {
            ToolError::InvalidInput { tool, message } => {
                assert_eq!(tool, "grep");
                assert!(message.starts_with("invalid regex"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = grep(dir.path(), json!({ "pattern": "x", "bogus": 1 })).await.unwrap_err();
        assert!(matches!(err, ToolError::InvalidInput { .. }));
    }

    #[tokio::test]
    async fn grep_refuses_paths_outside_the_workspace() {
        let outer = tempfile::tempdir().unwrap();
        let ws = outer.path().join("ws");
        write(&ws, "a.txt", "needle\n");
        write(outer.path(), "secret.txt", "needle\n");
        for path in ["..", "../secret.txt", outer.path().to_str().unwrap(), "/etc", "../missing"] {
            let err = grep(&ws, json!({ "pattern": "needle", "path": path })).await.unwrap_err();
            assert_eq!(err, ToolError::Failed(format!("{path} is outside the workspace")));
        }
        std::os::unix::fs::symlink(outer.path(), ws.join("escape")).unwrap();
        let err = grep(&ws, json!({ "pattern": "needle", "path": "escape" })).await.unwrap_err();
        assert_eq!(err, ToolError::Failed("escape is outside the workspace".into()));
    }

    #[tokio::test]
    async fn grep_accepts_relative_absolute_and_file_paths() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "src/a.rs", "needle\n");
        write(dir.path(), "other/b.rs", "needle\n");
        let out = grep(dir.path(), json!({ "pattern": "needle", "path": "src" })).await.unwrap();
        assert_eq!(out.output, "src/a.rs:1: needle\n");
        let abs = dir.path().join("src/a.rs");
        let out = grep(dir.path(), json!({ "pattern": "needle", "path": abs })).await.unwrap();
        assert_eq!(out.output, "src/a.rs:1: needle\n");
        let err = grep(dir.path(), json!({ "pattern": "needle", "path": "nope" })).await.unwrap_err();
        assert_eq!(err, ToolError::Failed("nope does not exist".into()));
    }

    #[tokio::test]
    async fn interrupted_before_start() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path());
        ctx.cancel.cancel();
        let err = Grep.run(json!({ "pattern": "x" }), ctx).await.unwrap_err();
        assert_eq!(err, ToolError::Interrupted);
    }

    #[test]
    fn grep_tree_is_relative_to_its_root() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "x/y.rs", "unsafe fn f() {}\n");
        assert_eq!(grep_tree(dir.path(), "unsafe fn", 10).unwrap(), ["x/y.rs:1: unsafe fn f() {}"]);
        assert!(matches!(grep_tree(dir.path(), "(", 10), Err(SearchError::Regex(_))));
    }
}
