//! `grep`, `glob` and `list`: read-only search of the session's workspace, in process with ripgrep's crates.
//!
//! Each tool resolves its `path` inside the workspace (anything outside is refused; the permission layer deals with
//! external directories before a tool runs), walks with `ignore` so `.gitignore`, `.ignore` and hidden files are
//! honoured as ripgrep would, and caps its output so one call can never flood the model's context. The walks are
//! blocking filesystem work, so they run on the blocking pool and stop when the activity is interrupted or the call
//! times out.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use globset::{GlobBuilder, GlobMatcher};
use grep::regex::{RegexMatcher, RegexMatcherBuilder};
use grep::searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkMatch};
use ignore::{DirEntry, WalkBuilder, WalkState};
use parking_lot::Mutex;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Tool, ToolContext, ToolError, ToolOutput, parse_input, schema_of};
use crate::provider::BoxFuture;

/// How many matches, files or entries one call returns.
const MAX_RESULTS: usize = 100;
/// Longer matched lines (minified code, data) are cut so one line cannot fill the context.
const MAX_LINE_CHARS: usize = 2000;
/// A walk over a huge tree should fail with advice rather than hold the turn.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Directories `list` never descends into: build output and caches that drown the tree even when not gitignored.
const JUNK_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "target",
    "dist",
    "build",
    "__pycache__",
    ".venv",
    "venv",
    ".next",
    ".nuxt",
    ".cache",
    ".idea",
    ".vscode",
    "coverage",
    ".pytest_cache",
    ".mypy_cache",
    ".tox",
    ".gradle",
    ".zig-cache",
    "zig-out",
];

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
    fn into_tool_error(self, tool: &str) -> ToolError {
        match self {
            Self::Regex(_) | Self::Glob { .. } => {
                ToolError::InvalidInput { tool: tool.to_owned(), message: self.to_string() }
            }
            Self::Stopped => ToolError::Interrupted,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// grep

pub struct Grep;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GrepInput {
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

/// Lines for the model, and whether more existed than were kept.
struct Found {
    lines: Vec<String>,
    truncated: bool,
}

/// Searches every file under `root` for `pattern` and returns up to `max` lines `path:line: text`, sorted by path
/// then line, paths relative to `root`. The public core of the `grep` tool, for benchmarks.
pub fn grep_tree(root: &Path, pattern: &str, max: usize) -> Result<Vec<String>, SearchError> {
    let query = GrepQuery { root, base: root, pattern, include: None, case_insensitive: false, max };
    search_lines(&query, &CancellationToken::new()).map(|found| found.lines)
}

impl Tool for Grep {
    fn name(&self) -> &'static str {
        "grep"
    }

    fn description(&self) -> &'static str {
        "Search file contents with a regular expression (ripgrep syntax), honouring .gitignore and skipping hidden \
         and binary files. Returns matching lines as `path:line: text`, sorted by path, at most 100. Narrow with \
         `path` (a directory or file) and `include` (a glob such as \"*.rs\"). Use it to find definitions, uses \
         and strings; use `glob` to find files by name."
    }

    fn input_schema(&self) -> Value {
        schema_of::<GrepInput>()
    }

    fn run<'a>(&'a self, input: Value, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let input: GrepInput = parse_input(self.name(), input)?;
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

// ---------------------------------------------------------------------------------------------------------------
// glob

pub struct Glob;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GlobInput {
    /// Glob matched against file paths below `path`, e.g. "**/*.rs" or "src/**/mod.rs"; a pattern without "/"
    /// matches file names at any depth ("*.toml" is "**/*.toml").
    pattern: String,
    /// Directory to search, relative to the workspace or absolute inside it. Defaults to the workspace.
    path: Option<String>,
}

impl Tool for Glob {
    fn name(&self) -> &'static str {
        "glob"
    }

    fn description(&self) -> &'static str {
        "Find files by name with a glob such as \"**/*.rs\" or \"src/**/test_*.py\", honouring .gitignore and \
         skipping hidden files. Returns workspace-relative paths, most recently modified first, at most 100. Use it \
         to locate files; use `grep` to search their contents."
    }

    fn input_schema(&self) -> Value {
        schema_of::<GlobInput>()
    }

    fn run<'a>(&'a self, input: Value, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let input: GlobInput = parse_input(self.name(), input)?;
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

// ---------------------------------------------------------------------------------------------------------------
// list

pub struct List;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListInput {
    /// Directory to list, relative to the workspace or absolute inside it. Defaults to the workspace.
    path: Option<String>,
    /// Extra globs to leave out, matched against paths below `path`, e.g. "*.log" or "docs/generated".
    ignore: Option<Vec<String>>,
}

impl Tool for List {
    fn name(&self) -> &'static str {
        "list"
    }

    fn description(&self) -> &'static str {
        "List a directory as an indented tree (directories end with \"/\"), honouring .gitignore and skipping \
         hidden files and build or dependency directories such as node_modules and target. Shallow entries come \
         first, at most 100. Prefer `glob` or `grep` when you know what you are looking for."
    }

    fn input_schema(&self) -> Value {
        schema_of::<ListInput>()
    }

    fn run<'a>(&'a self, input: Value, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let input: ListInput = parse_input(self.name(), input)?;
            let (base, root) = resolve(&ctx.cwd, input.path.as_deref())?;
            if !root.is_dir() {
                return Err(ToolError::Failed(format!("{} is not a directory", display_path(&root, &base))));
            }
            let ignore = input.ignore.unwrap_or_default();
            let tree = run_blocking(self.name(), &ctx.cancel, TIMEOUT, move |stop| {
                list_tree(&root, &base, &ignore, MAX_RESULTS, &stop)
            })
            .await?;
            Ok(tree)
        })
    }
}

struct Node {
    name: String,
    dir: bool,
    children: Vec<usize>,
}

/// The tree under `root`, filled breadth-first so a truncated listing still shows the top levels whole.
fn list_tree(
    root: &Path,
    base: &Path,
    ignore: &[String],
    max: usize,
    stop: &CancellationToken,
) -> Result<ToolOutput, SearchError> {
    let skip = ignore.iter().map(|p| compile_glob(p.trim_end_matches('/'))).collect::<Result<Vec<_>, _>>()?;
    let mut nodes: Vec<Node> = Vec::new();
    let mut top = Vec::new();
    let mut queue: VecDeque<(PathBuf, Option<usize>)> = VecDeque::from([(root.to_path_buf(), None)]);
    let mut truncated = false;
    'walk: while let Some((dir, parent)) = queue.pop_front() {
        if stop.is_cancelled() {
            return Err(SearchError::Stopped);
        }
        for (path, is_dir) in children(&dir, root, &skip) {
            if nodes.len() == max {
                truncated = true;
                break 'walk;
            }
            let index = nodes.len();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            nodes.push(Node { name, dir: is_dir, children: Vec::new() });
            match parent {
                Some(p) => nodes[p].children.push(index),
                None => top.push(index),
            }
            if is_dir {
                queue.push_back((path, Some(index)));
            }
        }
    }
    let mut output = format!("{}/\n", display_path(root, base));
    for &index in &top {
        render_node(&nodes, index, 1, &mut output);
    }
    if truncated {
        output.push_str("(showing the first 100 entries; list a subdirectory or use glob)\n");
    }
    Ok(ToolOutput { output, truncated })
}

/// The entries directly inside `dir` that survive the ignore rules, directories first, each group by name.
fn children(dir: &Path, root: &Path, skip: &[GlobMatcher]) -> Vec<(PathBuf, bool)> {
    // A one-level walk per directory still applies every ancestor's .gitignore, so the tree honours the same
    // rules as grep and glob without listing whole subtrees that may be cut anyway.
    let mut entries: Vec<(PathBuf, bool)> = walker(dir)
        .max_depth(Some(1))
        .build()
        .filter_map(Result::ok)
        .filter(|e| e.depth() == 1)
        .filter_map(|e| {
            let dir = e.file_type().is_some_and(|t| t.is_dir());
            let junk = dir && JUNK_DIRS.iter().any(|j| e.file_name() == *j);
            let rel = relative_or_name(e.path(), root);
            let skipped = skip.iter().any(|g| g.is_match(rel));
            (!junk && !skipped).then(|| (e.into_path(), dir))
        })
        .collect();
    entries.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.file_name().cmp(&b.0.file_name())));
    entries
}

fn render_node(nodes: &[Node], index: usize, depth: usize, output: &mut String) {
    let node = &nodes[index];
    output.push_str(&"  ".repeat(depth));
    output.push_str(&node.name);
    output.push_str(if node.dir { "/\n" } else { "\n" });
    for &child in &node.children {
        render_node(nodes, child, depth + 1, output);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// shared

/// A walk that honours ignore files the way ripgrep does.
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
mod tests {
    use std::fs;

    use serde_json::json;

    use super::*;

    fn ctx(dir: &Path) -> ToolContext {
        ToolContext {
            session_id: "s".into(),
            call_id: "c".into(),
            cwd: dir.to_path_buf(),
            output_dir: dir.join(".keel-output"),
            cancel: CancellationToken::new(),
            sandbox: Default::default(),
        }
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

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

    #[test]
    fn grep_tree_is_relative_to_its_root() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "x/y.rs", "unsafe fn f() {}\n");
        assert_eq!(grep_tree(dir.path(), "unsafe fn", 10).unwrap(), ["x/y.rs:1: unsafe fn f() {}"]);
        assert!(matches!(grep_tree(dir.path(), "(", 10), Err(SearchError::Regex(_))));
    }

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

    #[tokio::test]
    async fn list_shows_a_tree_without_junk() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".gitignore", "*.tmp\n");
        write(dir.path(), "Cargo.toml", "");
        write(dir.path(), "src/main.rs", "");
        write(dir.path(), "src/tool/mod.rs", "");
        write(dir.path(), "node_modules/x/index.js", "");
        write(dir.path(), "target/debug/keel", "");
        write(dir.path(), "scratch.tmp", "");
        write(dir.path(), "notes.log", "");
        let input = json!({ "ignore": ["*.log"] });
        let out = List.run(input, ctx(dir.path())).await.unwrap();
        assert_eq!(out.output, "./\n  src/\n    tool/\n      mod.rs\n    main.rs\n  Cargo.toml\n");
        let out = List.run(json!({ "path": "src" }), ctx(dir.path())).await.unwrap();
        assert_eq!(out.output, "src/\n  tool/\n    mod.rs\n  main.rs\n");
        let err = List.run(json!({ "path": "src/main.rs" }), ctx(dir.path())).await.unwrap_err();
        assert_eq!(err, ToolError::Failed("src/main.rs is not a directory".into()));
    }

    #[tokio::test]
    async fn list_limits_to_100_breadth_first() {
        let dir = tempfile::tempdir().unwrap();
        for f in 0..150 {
            write(dir.path(), &format!("a/f{f:03}.txt"), "");
        }
        write(dir.path(), "z.txt", "");
        let out = List.run(json!({}), ctx(dir.path())).await.unwrap();
        assert!(out.truncated);
        let lines: Vec<&str> = out.output.lines().collect();
        // The root line, 100 entries, the note; the top level is complete although `a/` is cut.
        assert_eq!(lines.len(), 102);
        assert!(lines.contains(&"  z.txt"));
        assert!(lines[101].starts_with("(showing the first 100 entries"));
    }
}
