//! The `*** Begin Patch` format of the `apply_patch` tool, as in OpenAI codex: parsing into file operations, and
//! applying one file's hunks to its text. Paths are returned as written; the caller resolves and confines them.

const BEGIN: &str = "*** Begin Patch";
const END: &str = "*** End Patch";
const ADD: &str = "*** Add File:";
const DELETE: &str = "*** Delete File:";
const UPDATE: &str = "*** Update File:";
const MOVE: &str = "*** Move to:";
const END_OF_FILE: &str = "*** End of File";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchOp {
    Add { path: String, content: String },
    Delete { path: String },
    Update { path: String, move_to: Option<String>, hunks: Vec<Hunk> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// The text after `@@`: a line at or before the hunk that narrows where it applies.
    pub context: Option<String>,
    pub lines: Vec<HunkLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HunkLine {
    Keep(String),
    Remove(String),
    Add(String),
}

/// Worded for the model: where the patch went wrong and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("invalid patch at line {line}: expected {expected}, found {found:?}")]
    Parse { line: usize, expected: String, found: String },
    #[error(
        "hunk {} does not apply: could not find the lines starting with {first_line:?} (read the file again; \
         context and removed lines must match it)", .index + 1
    )]
    HunkNotFound { index: usize, first_line: String },
}

fn parse_error(line: usize, expected: impl Into<String>, found: &str) -> PatchError {
    PatchError::Parse { line, expected: expected.into(), found: found.to_owned() }
}

/// Parses a whole patch. Blank lines around the markers and between operations are tolerated.
pub fn parse(text: &str) -> Result<Vec<PatchOp>, PatchError> {
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.iter().position(|l| !l.trim().is_empty());
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    let (Some(first), Some(last)) = (first, last) else {
        return Err(parse_error(1, format!("'{BEGIN}'"), ""));
    };
    if lines[first].trim() != BEGIN {
        return Err(parse_error(first + 1, format!("'{BEGIN}' as the first line"), lines[first]));
    }
    if last == first || lines[last].trim() != END {
        return Err(parse_error(last + 1, format!("'{END}' as the last line"), lines[last]));
    }
    Parser { lines: &lines[..last], pos: first + 1 }.ops()
}

struct Parser<'a> {
    /// The lines before `*** End Patch`; `pos` indexes them and is also the line number minus one.
    lines: &'a [&'a str],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.lines.get(self.pos).copied()
    }

    fn line_no(&self) -> usize {
        self.pos + 1
    }

    /// What an error names when the input ran out: the end marker, which was cut off the slice.
    fn found(&self) -> &'a str {
        self.peek().unwrap_or(END)
    }

    fn ops(mut self) -> Result<Vec<PatchOp>, PatchError> {
        let mut ops = Vec::new();
        while let Some(line) = self.peek() {
            if line.trim().is_empty() {
                self.pos += 1;
                continue;
            }
            ops.push(self.op(line)?);
        }
        if ops.is_empty() {
            return Err(parse_error(self.line_no(), expected_header(), END));
        }
        Ok(ops)
    }

    fn op(&mut self, line: &'a str) -> Result<PatchOp, PatchError> {
        let header = line.trim();
        let line_no = self.line_no();
        self.pos += 1;
        if let Some(path) = header.strip_prefix(ADD) {
            let path = path_of(path, ADD, line_no, line)?;
            return Ok(PatchOp::Add { path, content: self.added_content() });
        }
        if let Some(path) = header.strip_prefix(DELETE) {
            return Ok(PatchOp::Delete { path: path_of(path, DELETE, line_no, line)? });
        }
        if let Some(path) = header.strip_prefix(UPDATE) {
            let path = path_of(path, UPDATE, line_no, line)?;
            return self.update(path);
        }
        Err(parse_error(line_no, expected_header(), line))
    }

    fn added_content(&mut self) -> String {
        let mut content = String::new();
        while let Some(text) = self.peek().and_then(|l| l.strip_prefix('+')) {
            content.push_str(text);
            content.push('\n');
            self.pos += 1;
        }
        content
    }

    fn update(&mut self, path: String) -> Result<PatchOp, PatchError> {
        let mut move_to = None;
        if let Some(target) = self.peek().and_then(|l| l.trim().strip_prefix(MOVE)) {
            move_to = Some(path_of(target, MOVE, self.line_no(), self.found())?);
            self.pos += 1;
        }
        let mut hunks = Vec::new();
        while let Some(line) = self.peek() {
            if is_file_header(line) {
                break;
            }
            // Blank lines before the first hunk separate it from the header; inside a hunk they are context.
            if line.is_empty() || line.trim() == END_OF_FILE {
                self.pos += 1;
                continue;
            }
            hunks.push(self.hunk()?);
        }
        if hunks.is_empty() && move_to.is_none() {
            let expected = format!("a hunk ('@@' and lines starting with ' ', '-' or '+') for '{UPDATE} {path}'");
            return Err(parse_error(self.line_no(), expected, self.found()));
        }
        Ok(PatchOp::Update { path, move_to, hunks })
    }

    fn hunk(&mut self) -> Result<Hunk, PatchError> {
        let start = self.line_no();
        let mut context = None;
        if let Some(rest) = self.peek().and_then(|l| l.strip_prefix("@@")) {
            context = context_of(rest);
            self.pos += 1;
        }
        let lines = self.hunk_lines()?;
        if lines.is_empty() {
            return Err(parse_error(start + 1, "at least one hunk line after '@@'", self.found()));
        }
        Ok(Hunk { context, lines })
    }

    fn hunk_lines(&mut self) -> Result<Vec<HunkLine>, PatchError> {
        let mut lines = Vec::new();
        while let Some(line) = self.peek() {
            if is_file_header(line) || line.starts_with("@@") {
                break;
            }
            self.pos += 1;
            if line.trim() == END_OF_FILE {
                continue;
            }
            let parsed = match line.chars().next() {
                // An empty line is a blank context line whose leading space got lost.
                None => HunkLine::Keep(String::new()),
                Some(' ') => HunkLine::Keep(line[1..].to_owned()),
                Some('-') => HunkLine::Remove(line[1..].to_owned()),
                Some('+') => HunkLine::Add(line[1..].to_owned()),
                Some(_) => {
                    let expected = "a hunk line starting with ' ', '-' or '+', an '@@' line or a file header";
                    return Err(parse_error(self.pos, expected, line));
                }
            };
            lines.push(parsed);
        }
        Ok(lines)
    }
}

fn expected_header() -> String {
    format!("a file header ('{ADD} <path>', '{UPDATE} <path>' or '{DELETE} <path>')")
}

fn path_of(rest: &str, header: &str, line_no: usize, line: &str) -> Result<String, PatchError> {
    let path = rest.trim();
    if path.is_empty() {
        return Err(parse_error(line_no, format!("a path after '{header}'"), line));
    }
    Ok(path.to_owned())
}

fn is_file_header(line: &str) -> bool {
    let line = line.trim();
    [ADD, DELETE, UPDATE].iter().any(|h| line.starts_with(h))
}

/// Models sometimes copy unified-diff ranges (`@@ -1,3 +1,4 @@`); those say nothing this format can use.
fn context_of(rest: &str) -> Option<String> {
    let text = rest.trim();
    let is_range = text.starts_with('-') && text.ends_with("@@");
    (!text.is_empty() && !is_range).then(|| text.to_owned())
}

/// Applies hunks in order, each at or after where the previous one ended. Kept lines keep the file's own text, so a
/// whitespace-tolerant match does not rewrite them.
pub fn apply(content: &str, hunks: &[Hunk]) -> Result<String, PatchError> {
    let had_final_newline = content.is_empty() || content.ends_with('\n');
    let body = content.strip_suffix('\n').unwrap_or(content);
    let mut lines: Vec<String> =
        if content.is_empty() { Vec::new() } else { body.split('\n').map(str::to_owned).collect() };
    let mut cursor = 0;
    for (index, hunk) in hunks.iter().enumerate() {
        cursor = apply_hunk(&mut lines, hunk, cursor).ok_or_else(|| not_found(index, hunk))?;
    }
    if lines.is_empty() {
        return Ok(String::new());
    }
    let mut out = lines.join("\n");
    if had_final_newline {
        out.push('\n');
    }
    Ok(out)
}

/// Returns where the hunk's new lines end, or `None` when it cannot be located.
fn apply_hunk(lines: &mut Vec<String>, hunk: &Hunk, cursor: usize) -> Option<usize> {
    let mut from = cursor;
    if let Some(context) = &hunk.context {
        // The block may start at the context line itself, when the model repeated it as a kept line.
        from = seek(lines, &[context.as_str()], cursor)?;
    }
    let old: Vec<&str> = hunk
        .lines
        .iter()
        .filter_map(|l| match l {
            HunkLine::Keep(t) | HunkLine::Remove(t) => Some(t.as_str()),
            HunkLine::Add(_) => None,
        })
        .collect();
    if old.is_empty() {
        // Nothing to anchor on: insert after the context line, or at the end of the file.
        let at = if hunk.context.is_some() { from + 1 } else { lines.len() };
        let added: Vec<String> = hunk.lines.iter().filter_map(added_text).map(str::to_owned).collect();
        let count = added.len();
        lines.splice(at..at, added);
        return Some(at + count);
    }
    let (start, old_len) = locate(lines, &old, trailing_blank_keeps(hunk), from)?;
    let replacement = new_lines(&hunk.lines, &lines[start..start + old_len]);
    let end = start + replacement.len();
    lines.splice(start..start + old_len, replacement);
    Some(end)
}

/// Finds the old block; if that fails, retries without trailing blank kept lines, which are usually the blank line
/// that separated this hunk from the next operation rather than real context.
fn locate(lines: &[String], old: &[&str], blank_tail: usize, from: usize) -> Option<(usize, usize)> {
    if let Some(start) = seek(lines, old, from) {
        return Some((start, old.len()));
    }
    let shorter = old.len() - blank_tail;
    if blank_tail == 0 || shorter == 0 {
        return None;
    }
    seek(lines, &old[..shorter], from).map(|start| (start, shorter))
}

/// How many of the hunk's last old lines are blank kept lines.
fn trailing_blank_keeps(hunk: &Hunk) -> usize {
    hunk.lines
        .iter()
        .rev()
        .filter(|l| !matches!(l, HunkLine::Add(_)))
        .take_while(|l| matches!(l, HunkLine::Keep(t) if t.trim().is_empty()))
        .count()
}

/// The hunk's new lines for the matched block: kept lines from the file, added lines from the hunk. Kept lines
/// past the end of `matched` are the blank ones `locate` dropped, so they are left out.
fn new_lines(hunk: &[HunkLine], matched: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut file_lines = matched.iter();
    for line in hunk {
        match line {
            HunkLine::Keep(_) => out.extend(file_lines.next().cloned()),
            HunkLine::Remove(_) => {
                file_lines.next();
            }
            HunkLine::Add(text) => out.push(text.clone()),
        }
    }
    out
}

fn added_text(line: &HunkLine) -> Option<&str> {
    match line {
        HunkLine::Add(t) => Some(t),
        _ => None,
    }
}

/// The first index at or after `from` where `pattern` matches: exactly if anywhere, else line by line trimmed.
fn seek(lines: &[String], pattern: &[&str], from: usize) -> Option<usize> {
    let last_start = lines.len().checked_sub(pattern.len())?;
    if from > last_start {
        return None;
    }
    let matches_at =
        |start: usize, eq: fn(&str, &str) -> bool| pattern.iter().zip(&lines[start..]).all(|(p, l)| eq(p, l));
    (from..=last_start)
        .find(|&s| matches_at(s, |p, l| p == l))
        .or_else(|| (from..=last_start).find(|&s| matches_at(s, |p, l| p.trim() == l.trim())))
}

fn not_found(index: usize, hunk: &Hunk) -> PatchError {
    let first_line = hunk
        .context
        .clone()
        .or_else(|| {
            hunk.lines.iter().find_map(|l| match l {
                HunkLine::Keep(t) | HunkLine::Remove(t) => Some(t.clone()),
                HunkLine::Add(_) => None,
            })
        })
        .unwrap_or_default();
    PatchError::HunkNotFound { index, first_line }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(s: &str) -> HunkLine {
        HunkLine::Keep(s.into())
    }
    fn remove(s: &str) -> HunkLine {
        HunkLine::Remove(s.into())
    }
    fn add(s: &str) -> HunkLine {
        HunkLine::Add(s.into())
    }
    fn hunk(context: Option<&str>, lines: Vec<HunkLine>) -> Hunk {
        Hunk { context: context.map(Into::into), lines }
    }

    fn parse_err(text: &str) -> (usize, String) {
        match parse(text) {
            Err(PatchError::Parse { line, expected, .. }) => (line, expected),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn parses_each_op_kind() {
        let text = "*** Begin Patch\n*** Add File: path/new.txt\n+line one\n+line two\n*** Delete File: old.txt\n\
                    *** Update File: src/lib.rs\n@@\n-a\n+b\n*** End Patch\n";
        let ops = parse(text).unwrap();
        assert_eq!(
            ops,
            vec![
                PatchOp::Add { path: "path/new.txt".into(), content: "line one\nline two\n".into() },
                PatchOp::Delete { path: "old.txt".into() },
                PatchOp::Update {
                    path: "src/lib.rs".into(),
                    move_to: None,
                    hunks: vec![hunk(None, vec![remove("a"), add("b")])]
                },
            ]
        );
    }

    #[test]
    fn parses_empty_add_and_tolerates_blank_lines_and_crlf() {
        let text = "\n*** Begin Patch\r\n*** Add File: empty.txt\r\n\r\n*** Delete File: x\r\n*** End Patch\r\n\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                PatchOp::Add { path: "empty.txt".into(), content: String::new() },
                PatchOp::Delete { path: "x".into() }
            ]
        );
    }

    #[test]
    fn parses_multi_hunk_update_with_context_and_move() {
        let text = "*** Begin Patch
*** Update File: src/lib.rs
*** Move to: src/main.rs
@@ fn context_line()
 unchanged line
-removed line
+added line

@@ -10,2 +10,2 @@
 other
-x
+y
*** End of File
*** End Patch";
        let ops = parse(text).unwrap();
        assert_eq!(
            ops,
            vec![PatchOp::Update {
                path: "src/lib.rs".into(),
                move_to: Some("src/main.rs".into()),
                hunks: vec![
                    hunk(
                        Some("fn context_line()"),
                        vec![keep("unchanged line"), remove("removed line"), add("added line"), keep("")]
                    ),
                    hunk(None, vec![keep("other"), remove("x"), add("y")]),
                ],
            }]
        );
    }

    #[test]
    fn parses_first_hunk_without_marker_and_pure_move() {
        let text = "*** Begin Patch\n*** Update File: a\n x\n-y\n*** Update File: b\n*** Move to: c\n*** End Patch";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                PatchOp::Update {
                    path: "a".into(),
                    move_to: None,
                    hunks: vec![hunk(None, vec![keep("x"), remove("y")])]
                },
                PatchOp::Update { path: "b".into(), move_to: Some("c".into()), hunks: vec![] },
            ]
        );
    }

    #[test]
    fn malformed_patches_name_the_line_and_expectation() {
        assert_eq!(parse_err("").0, 1);
        let (line, expected) = parse_err("*** Add File: a\n+x\n*** End Patch");
        assert_eq!((line, expected.as_str()), (1, "'*** Begin Patch' as the first line"));
        let (line, expected) = parse_err("*** Begin Patch\n*** Add File: a\n+x\n");
        assert_eq!((line, expected.as_str()), (3, "'*** End Patch' as the last line"));
        assert_eq!(parse_err("*** Begin Patch\n*** End Patch").1, expected_header());
        let (line, expected) = parse_err("*** Begin Patch\n*** Rename File: a\n*** End Patch");
        assert_eq!((line, expected), (2, expected_header()));
        let (line, expected) = parse_err("*** Begin Patch\n*** Update File: a\n@@\n x\noops\n*** End Patch");
        assert_eq!(line, 5);
        assert!(expected.starts_with("a hunk line starting with"), "{expected}");
        let (line, expected) = parse_err("*** Begin Patch\n*** Update File: a\n*** End Patch");
        assert_eq!(line, 3);
        assert!(expected.contains("*** Update File: a"), "{expected}");
        assert_eq!(parse_err("*** Begin Patch\n*** Update File: a\n@@ f\n@@ g\n x\n*** End Patch").0, 4);
        assert_eq!(parse_err("*** Begin Patch\n*** Delete File:  \n*** End Patch").0, 2);
        // Text after an Add File's lines that is not a header.
        assert_eq!(parse_err("*** Begin Patch\n*** Add File: a\n+x\ny\n*** End Patch").0, 4);
    }

    #[test]
    fn error_messages() {
        let err = parse("*** Begin Patch\n*** Rename File: a\n*** End Patch").unwrap_err();
        assert!(err.to_string().starts_with("invalid patch at line 2: expected a file header"), "{err}");
        let err = apply("a\n", &[hunk(None, vec![remove("zz")])]).unwrap_err();
        assert_eq!(err, PatchError::HunkNotFound { index: 0, first_line: "zz".into() });
        assert!(err.to_string().starts_with("hunk 1 does not apply"), "{err}");
    }

    #[test]
    fn applies_exact_hunks_in_order() {
        let hunks = [
            hunk(None, vec![keep("b"), add("x")]),
            // The first `b` matches too, but the search starts where the previous hunk ended.
            hunk(None, vec![remove("b"), add("y")]),
        ];
        assert_eq!(apply("b\nc\nb\n", &hunks).unwrap(), "b\nx\nc\ny\n");
    }

    #[test]
    fn context_narrows_the_search() {
        let content = "fn a() {\n    x();\n}\nfn b() {\n    x();\n}\n";
        let hunks = [hunk(Some("fn b() {"), vec![remove("    x();"), add("    y();")])];
        assert_eq!(apply(content, &hunks).unwrap(), "fn a() {\n    x();\n}\nfn b() {\n    y();\n}\n");
        // The context repeated as the first kept line.
        let hunks = [hunk(Some("fn b() {"), vec![keep("fn b() {"), remove("    x();"), add("    y();")])];
        assert_eq!(apply(content, &hunks).unwrap(), "fn a() {\n    x();\n}\nfn b() {\n    y();\n}\n");
        let hunks = [hunk(Some("fn c() {"), vec![remove("    x();")])];
        assert_eq!(
            apply(content, &hunks).unwrap_err(),
            PatchError::HunkNotFound { index: 0, first_line: "fn c() {".into() }
        );
    }

    #[test]
    fn whitespace_tolerant_match_keeps_file_lines() {
        let content = "\tif x {  \n\t\told();\n\t}\n";
        let hunks = [hunk(None, vec![keep("    if x {"), remove("        old();"), add("\t\tnew();"), keep("    }")])];
        assert_eq!(apply(content, &hunks).unwrap(), "\tif x {  \n\t\tnew();\n\t}\n");
    }

    #[test]
    fn trailing_blank_context_is_forgiven() {
        let hunks = [hunk(None, vec![remove("a"), add("b"), keep("")])];
        assert_eq!(apply("x\na\n", &hunks).unwrap(), "x\nb\n");
        // Added lines after the dropped blank line still go in.
        assert_eq!(apply("x\na", &[hunk(None, vec![remove("a"), keep(""), add("c")])]).unwrap(), "x\nc");
        // A removed blank line is never dropped from the search.
        assert!(apply("x\na\n", &[hunk(None, vec![remove("a"), remove("")])]).is_err());
        assert_eq!(apply("a\n\ny\n", &hunks).unwrap(), "b\n\ny\n");
    }

    #[test]
    fn final_newline_follows_the_input() {
        let hunks = [hunk(None, vec![remove("b"), add("c")])];
        assert_eq!(apply("a\nb", &hunks).unwrap(), "a\nc");
        assert_eq!(apply("a\nb\n", &hunks).unwrap(), "a\nc\n");
        assert_eq!(apply("", &[hunk(None, vec![add("x")])]).unwrap(), "x\n");
        assert_eq!(apply("b\n", &[hunk(None, vec![remove("b")])]).unwrap(), "");
        assert_eq!(apply("a\n", &[hunk(None, vec![add("z")])]).unwrap(), "a\nz\n");
        assert_eq!(apply("a\n\n", &[hunk(None, vec![keep(""), add("z")])]).unwrap(), "a\n\nz\n");
    }

    #[test]
    fn hunk_that_does_not_apply() {
        let content = "a\nb\nc\n";
        let hunks = [hunk(None, vec![keep("c"), add("d")]), hunk(None, vec![remove("a")])];
        assert_eq!(apply(content, &hunks).unwrap_err(), PatchError::HunkNotFound { index: 1, first_line: "a".into() });
        assert!(apply(content, &[hunk(None, vec![keep("a"), remove("x")])]).is_err());
    }

    #[test]
    fn parse_then_apply() {
        let text = "*** Begin Patch\n*** Update File: f\n@@ fn main() {\n-    old();\n+    new();\n*** End Patch\n";
        let ops = parse(text).unwrap();
        let [PatchOp::Update { hunks, .. }] = ops.as_slice() else { panic!("expected one update, got {ops:?}") };
        assert_eq!(apply("fn main() {\n    old();\n}", hunks).unwrap(), "fn main() {\n    new();\n}");
    }
}
