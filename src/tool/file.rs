//! `read`, `write`, `edit` and `apply_patch`: file tools confined to the workspace (see `fs`).

use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;

use super::fs::{self, Target};
use super::{ToolContext, ToolError, ToolOutput, TypedTool, matching, output, patch};
use crate::permission::Access;
use crate::provider::BoxFuture;

const MAX_LINES: usize = 2000;
const MAX_LINE_CHARS: usize = 2000;
const MAX_PAGE_BYTES: usize = 50 * 1024;
/// Files above this are not read at all; page through smaller ones.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The permission accesses of touching `path` with `action`: the path itself, and its directory when it lies
/// outside the workspace.
pub fn path_access(action: &'static str, cwd: &Path, path: &str) -> Vec<Access> {
    let target = fs::locate(cwd, path);
    let mut accesses = vec![Access { action, resources: vec![target.display()] }];
    if let Target::Outside(abs) = &target {
        let dir = abs.parent().unwrap_or(abs).display().to_string();
        accesses.push(Access { action: "external_directory", resources: vec![dir] });
    }
    accesses
}

fn fs_error(e: fs::FsError) -> ToolError {
    ToolError::Failed(e.to_string())
}

pub struct Read;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadInput {
    /// The file to read, relative to the workspace or absolute; or a `keel-output:…` handle of saved tool output.
    file_path: String,
    /// The first line to show, 0-based.
    #[serde(default)]
    offset: usize,
    /// How many lines to show (at most 2000).
    #[serde(default)]
    limit: Option<usize>,
}

impl TypedTool for Read {
    fn idempotent(&self) -> bool {
        true
    }

    type Input = ReadInput;

    fn name(&self) -> &'static str {
        "read"
    }

    fn description(&self) -> &'static str {
        "Read a text file with line numbers, 2000 lines at a time (lines over 2000 characters are cut, a page is at \
         most 50 KiB); continue with offset. Also reads saved tool output (keel-output:… handles)."
    }

    fn pages_itself(&self) -> bool {
        true
    }

    fn access(&self, input: Result<&Self::Input, &ToolError>, ctx: &ToolContext) -> Result<Vec<Access>, ToolError> {
        let input = input.map_err(Clone::clone)?;
        if input.file_path.starts_with(output::HANDLE_PREFIX) {
            return Ok(Vec::new());
        }
        Ok(path_access("read", &ctx.cwd, &input.file_path))
    }

    fn execute<'a>(&'a self, input: Self::Input, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let bytes = if input.file_path.starts_with(output::HANDLE_PREFIX) {
                let path = output::resolve(&ctx.output_dir, &input.file_path)
                    .ok_or_else(|| ToolError::Failed(format!("no saved output {} in this session", input.file_path)))?;
                std::fs::read(path).map_err(|e| ToolError::Failed(e.to_string()))?
            } else {
                let target = fs::locate(&ctx.cwd, &input.file_path);
                fs::read(&ctx.cwd, &target, MAX_FILE_BYTES).map_err(fs_error)?
            };
            if bytes.iter().take(8192).any(|b| *b == 0) {
                return Err(ToolError::Failed(format!("{} is a binary file", input.file_path)));
            }
            let text = String::from_utf8_lossy(&bytes);
            Ok(ToolOutput {
                output: page(&text, input.offset, input.limit.unwrap_or(MAX_LINES).min(MAX_LINES)),
                truncated: false,
            })
        })
    }
}

/// Numbered lines from `offset`, bounded by line count, line length and page size, with a note on how to go on.
fn page(text: &str, offset: usize, limit: usize) -> String {
    let total = text.lines().count();
    let mut out = String::new();
    let mut shown = 0;
    for (i, line) in text.lines().enumerate().skip(offset).take(limit) {
        let line = match line.char_indices().nth(MAX_LINE_CHARS) {
            Some((cut, _)) => format!("{}… [line cut at {MAX_LINE_CHARS} characters]", &line[..cut]),
            None => line.to_owned(),
        };
        let numbered = format!("{:>6}\t{line}\n", i + 1);
        if out.len() + numbered.len() > MAX_PAGE_BYTES && shown > 0 {
            break;
        }
        out.push_str(&numbered);
        shown += 1;
    }
    if total == 0 {
        return "(empty file)".into();
    }
    if offset >= total {
        return format!("(the file has {total} lines; offset {offset} is past its end)");
    }
    let end = offset + shown;
    if end < total {
        out.push_str(&format!("(showing lines {}-{end} of {total}; continue with offset {end})\n", offset + 1));
    }
    out
}

pub struct Write;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WriteInput {
    /// The file to create or replace, relative to the workspace or absolute.
    file_path: String,
    /// The whole new content.
    content: String,
}

impl TypedTool for Write {
    type Input = WriteInput;

    fn name(&self) -> &'static str {
        "write"
    }

    fn description(&self) -> &'static str {
        "Create a file or replace its whole content. Prefer edit for changes to existing files."
    }

    fn access(&self, input: Result<&Self::Input, &ToolError>, ctx: &ToolContext) -> Result<Vec<Access>, ToolError> {
        let input = input.map_err(Clone::clone)?;
        Ok(path_access("edit", &ctx.cwd, &input.file_path))
    }

    fn execute<'a>(&'a self, input: Self::Input, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let target = fs::locate(&ctx.cwd, &input.file_path);
            let _locked = fs::lock_files(&ctx.cwd, &[&target]).await;
            let existed = fs::exists(&ctx.cwd, &target);
            fs::write(&ctx.cwd, &target, input.content.as_bytes()).map_err(fs_error)?;
            let verb = if existed { "Replaced" } else { "Created" };
            Ok(ToolOutput {
                output: format!("{verb} {} ({} bytes)", target.display(), input.content.len()),
                truncated: false,
            })
        })
    }
}

pub struct Edit;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EditInput {
    /// The file to change, relative to the workspace or absolute.
    file_path: String,
    /// The exact text to replace; include enough surrounding lines to make it unique.
    old_string: String,
    /// The replacement.
    new_string: String,
    /// Replace every occurrence instead of requiring exactly one.
    #[serde(default)]
    replace_all: bool,
}

impl TypedTool for Edit {
    type Input = EditInput;

    fn name(&self) -> &'static str {
        "edit"
    }

    fn description(&self) -> &'static str {
        "Replace text in a file. oldString must match exactly once (unless replaceAll); if it does not match \
         exactly, a whitespace- and indentation-tolerant match is tried, and ambiguous matches are refused."
    }

    fn access(&self, input: Result<&Self::Input, &ToolError>, ctx: &ToolContext) -> Result<Vec<Access>, ToolError> {
        let input = input.map_err(Clone::clone)?;
        Ok(path_access("edit", &ctx.cwd, &input.file_path))
    }

    fn execute<'a>(&'a self, input: Self::Input, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let target = fs::locate(&ctx.cwd, &input.file_path);
            let _locked = fs::lock_files(&ctx.cwd, &[&target]).await;
            let bytes = fs::read(&ctx.cwd, &target, MAX_FILE_BYTES).map_err(fs_error)?;
            let content =
                String::from_utf8(bytes).map_err(|_| ToolError::Failed("the file is not UTF-8 text".into()))?;
            let replaced = matching::replace(&content, &input.old_string, &input.new_string, input.replace_all)
                .map_err(|e| ToolError::Failed(e.to_string()))?;
            fs::write(&ctx.cwd, &target, replaced.content.as_bytes()).map_err(fs_error)?;
            Ok(ToolOutput {
                output: format!(
                    "Edited {}: {} replacement{} ({:?} match)",
                    target.display(),
                    replaced.replacements,
                    if replaced.replacements == 1 { "" } else { "s" },
                    replaced.strategy
                ),
                truncated: false,
            })
        })
    }
}

pub struct ApplyPatch;

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchInput {
    /// The patch, from `*** Begin Patch` to `*** End Patch`, with `*** Add File:`, `*** Update File:` (optionally
    /// `*** Move to:`) and `*** Delete File:` sections; update hunks start with `@@` and use ' ', '-', '+' lines.
    patch: String,
}

impl TypedTool for ApplyPatch {
    type Input = PatchInput;

    fn name(&self) -> &'static str {
        "apply_patch"
    }

    fn description(&self) -> &'static str {
        "Apply a multi-file patch in the *** Begin Patch format: add, update (with optional move) and delete files. \
         Every hunk is checked before any file changes."
    }

    fn access(&self, input: Result<&Self::Input, &ToolError>, ctx: &ToolContext) -> Result<Vec<Access>, ToolError> {
        let input = input.map_err(Clone::clone)?;
        let ops = patch::parse(&input.patch).map_err(|e| ToolError::Failed(e.to_string()))?;
        let mut accesses = Vec::new();
        for op in &ops {
            let (path, moved) = match op {
                patch::PatchOp::Add { path, .. } | patch::PatchOp::Delete { path } => (path, None),
                patch::PatchOp::Update { path, move_to, .. } => (path, move_to.as_ref()),
            };
            accesses.extend(path_access("edit", &ctx.cwd, path));
            if let Some(to) = moved {
                accesses.extend(path_access("edit", &ctx.cwd, to));
            }
        }
        Ok(accesses)
    }

    fn execute<'a>(&'a self, input: Self::Input, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let ops = patch::parse(&input.patch).map_err(|e| ToolError::Failed(e.to_string()))?;
            let mut touched: Vec<Target> = Vec::new();
            for op in &ops {
                let mut paths = match op {
                    patch::PatchOp::Add { path, .. } | patch::PatchOp::Delete { path } => {
                        vec![fs::locate(&ctx.cwd, path)]
                    }
                    patch::PatchOp::Update { path, move_to, .. } => {
                        std::iter::once(path).chain(move_to).map(|p| fs::locate(&ctx.cwd, p)).collect()
                    }
                };
                paths.dedup();
                touched.extend(paths);
            }
            let _locked = fs::lock_files(&ctx.cwd, &touched.iter().collect::<Vec<_>>()).await;
            let mut seen = std::collections::HashSet::new();
            for target in &touched {
                if !seen.insert(target.clone()) {
                    return Err(ToolError::Failed(format!(
                        "{} appears in more than one section; put all its changes in one Update",
                        target.display()
                    )));
                }
            }
            // Compute every change first, so a hunk that does not apply leaves all files untouched.
            let mut changes: Vec<(Target, Option<String>)> = Vec::new();
            let mut summary = Vec::new();
            for op in ops {
                match op {
                    patch::PatchOp::Add { path, content } => {
                        let target = fs::locate(&ctx.cwd, &path);
                        if fs::exists(&ctx.cwd, &target) {
                            return Err(ToolError::Failed(format!("{path} already exists; use an Update section")));
                        }
                        summary.push(format!("A {}", target.display()));
                        changes.push((target, Some(content)));
                    }
                    patch::PatchOp::Delete { path } => {
                        let target = fs::locate(&ctx.cwd, &path);
                        if !fs::exists(&ctx.cwd, &target) {
                            return Err(ToolError::Failed(format!("{path} does not exist")));
                        }
                        summary.push(format!("D {}", target.display()));
                        changes.push((target, None));
                    }
                    patch::PatchOp::Update { path, move_to, hunks } => {
                        let target = fs::locate(&ctx.cwd, &path);
                        let bytes = fs::read(&ctx.cwd, &target, MAX_FILE_BYTES).map_err(fs_error)?;
                        let content = String::from_utf8(bytes)
                            .map_err(|_| ToolError::Failed(format!("{path} is not UTF-8 text")))?;
                        let updated = if hunks.is_empty() {
                            content
                        } else {
                            patch::apply(&content, &hunks).map_err(|e| ToolError::Failed(format!("{path}: {e}")))?
                        };
                        match move_to.filter(|to| fs::locate(&ctx.cwd, to) != target) {
                            Some(to) => {
                                let dest = fs::locate(&ctx.cwd, &to);
                                summary.push(format!("R {} -> {}", target.display(), dest.display()));
                                changes.push((dest, Some(updated)));
                                changes.push((target, None));
                            }
                            None => {
                                summary.push(format!("M {}", target.display()));
                                changes.push((target, Some(updated)));
                            }
                        }
                    }
                }
            }
            for (target, content) in &changes {
                match content {
                    Some(content) => fs::write(&ctx.cwd, target, content.as_bytes()).map_err(fs_error)?,
                    None => fs::remove(&ctx.cwd, target).map_err(fs_error)?,
                }
            }
            Ok(ToolOutput { output: format!("Applied the patch:\n{}", summary.join("\n")), truncated: false })
        })
    }
}
