//! `list`: a directory as a breadth-first tree, without build output and caches.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use globset::GlobMatcher;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{
    MAX_RESULTS, SearchError, TIMEOUT, compile_glob, display_path, relative_or_name, resolve, run_blocking, walker,
};
use crate::provider::BoxFuture;
use crate::tool::{ToolContext, ToolError, ToolOutput, TypedTool};

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

pub struct List;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListInput {
    /// Directory to list, relative to the workspace or absolute inside it. Defaults to the workspace.
    path: Option<String>,
    /// Extra globs to leave out, matched against paths below `path`, e.g. "*.log" or "docs/generated".
    ignore: Option<Vec<String>>,
}

impl TypedTool for List {
    fn idempotent(&self) -> bool {
        true
    }

    type Input = ListInput;

    fn name(&self) -> &'static str {
        "list"
    }

    fn description(&self) -> &'static str {
        "List a directory as an indented tree (directories end with \"/\"), honouring .gitignore and skipping \
         hidden files and build or dependency directories such as node_modules and target. Shallow entries come \
         first, at most 100. Prefer `glob` or `grep` when you know what you are looking for."
    }

    fn execute<'a>(&'a self, input: Self::Input, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
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

#[cfg(test)]
mod tests {
    use crate::tool::Tool;
    use serde_json::json;

    use super::*;
    use crate::tool::search::test_support::{ctx, write};

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
