//! The text replacement behind the `edit` tool. Models often copy a block with the wrong indentation or stray
//! trailing spaces, so an exact match is tried first and then line-based matches that forgive whitespace, from the
//! strictest to the most tolerant. The first strategy that finds anything decides: a looser one never overrides an
//! ambiguity found by a stricter one, because it could only find more candidates, not fewer.

/// How `old` was found in the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Exact,
    /// Each line equal after trimming whitespace at both ends.
    LineTrimmed,
    /// Each line equal after removing the block's common leading indentation, so relative indentation must agree.
    IndentationFlexible,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    pub content: String,
    pub replacements: usize,
    pub strategy: Strategy,
}

/// Worded for the model: each says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    #[error("oldString is empty; give the exact text to replace (to create a file, write it instead)")]
    EmptyOld,
    #[error("oldString and newString are identical; there is nothing to change")]
    NoChange,
    #[error(
        "oldString was not found in the file; it must match the file's text, including line breaks (read the file \
         again and copy the text exactly)"
    )]
    NotFound,
    #[error("oldString appears {count} times; add surrounding lines to make it unique or set replaceAll")]
    Ambiguous { count: usize },
}

/// Replaces `old` with `new` in `content`.
///
/// Strategies, in order: [`Strategy::Exact`], then [`Strategy::IndentationFlexible`], then
/// [`Strategy::LineTrimmed`]. Every indentation-flexible match is also a line-trimmed match, so the stricter one goes
/// first or it could never be chosen. The line-based strategies match whole lines; a trailing newline on `old` makes
/// the match include the last line's line break, exactly as in an exact match.
pub fn replace(content: &str, old: &str, new: &str, replace_all: bool) -> Result<Replaced, MatchError> {
    if old.is_empty() {
        return Err(MatchError::EmptyOld);
    }
    if old == new {
        return Err(MatchError::NoChange);
    }
    let count = content.matches(old).count();
    if count > 0 {
        return exact(content, old, new, count, replace_all);
    }
    for strategy in [Strategy::IndentationFlexible, Strategy::LineTrimmed] {
        if let Some(replaced) = by_lines(content, old, new, replace_all, strategy)? {
            return Ok(replaced);
        }
    }
    Err(MatchError::NotFound)
}

fn exact(content: &str, old: &str, new: &str, count: usize, replace_all: bool) -> Result<Replaced, MatchError> {
    if count > 1 && !replace_all {
        return Err(MatchError::Ambiguous { count });
    }
    Ok(Replaced { content: content.replace(old, new), replacements: count, strategy: Strategy::Exact })
}

/// One line of the content, as byte offsets into it.
struct Line<'a> {
    /// The text without its line break (`\n` or `\r\n`).
    text: &'a str,
    start: usize,
    /// Where the line break starts; equal to `next` on a last line without one.
    end: usize,
    /// Where the following line starts.
    next: usize,
}

fn split_lines(content: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut start = 0;
    for raw in content.split_inclusive('\n') {
        let text = raw.strip_suffix('\n').map_or(raw, |t| t.strip_suffix('\r').unwrap_or(t));
        lines.push(Line { text, start, end: start + text.len(), next: start + raw.len() });
        start += raw.len();
    }
    lines
}

/// `Ok(None)` when the strategy finds nothing, so the next one can try.
fn by_lines(
    content: &str,
    old: &str,
    new: &str,
    replace_all: bool,
    strategy: Strategy,
) -> Result<Option<Replaced>, MatchError> {
    let (old_body, old_has_break) = match old.strip_suffix('\n') {
        Some(body) => (body, true),
        None => (old, false),
    };
    let old_lines: Vec<&str> = old_body.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    // A whitespace-only `old` would match every blank line; only an exact match may replace whitespace.
    if old_lines.iter().all(|l| is_blank(l)) {
        return Ok(None);
    }
    let lines = split_lines(content);
    let starts = find_blocks(&lines, &old_lines, strategy);
    match starts.len() {
        0 => return Ok(None),
        1 => {}
        count if !replace_all => return Err(MatchError::Ambiguous { count }),
        _ => {}
    }

    let mut out = String::with_capacity(content.len() + new.len());
    let mut copied = 0;
    for &first in &starts {
        let last = &lines[first + old_lines.len() - 1];
        let span_end = if old_has_break { last.next } else { last.end };
        let mut replacement =
            reindent(new, indent_of_block(&lines[first..], &old_lines), indent_of(first_text(&old_lines)));
        // `old` ended with a line break the file's last line does not have; the file should stay without one.
        if old_has_break && last.end == last.next && replacement.ends_with('\n') {
            replacement.pop();
        }
        out.push_str(&content[copied..lines[first].start]);
        out.push_str(&replacement);
        copied = span_end;
    }
    out.push_str(&content[copied..]);
    Ok(Some(Replaced { content: out, replacements: starts.len(), strategy }))
}

/// The first line of each non-overlapping run of lines that matches `old_lines`.
fn find_blocks(lines: &[Line<'_>], old_lines: &[&str], strategy: Strategy) -> Vec<usize> {
    let n = old_lines.len();
    let old_norm = normalize(old_lines.iter().copied(), strategy);
    let mut starts = Vec::new();
    let mut i = 0;
    while i + n <= lines.len() {
        if normalize(lines[i..i + n].iter().map(|l| l.text), strategy) == old_norm {
            starts.push(i);
            i += n;
        } else {
            i += 1;
        }
    }
    starts
}

fn normalize<'a>(lines: impl Iterator<Item = &'a str> + Clone, strategy: Strategy) -> Vec<&'a str> {
    match strategy {
        Strategy::LineTrimmed | Strategy::Exact => lines.map(str::trim).collect(),
        Strategy::IndentationFlexible => {
            let common = lines.clone().filter(|l| !is_blank(l)).map(|l| indent_of(l).len()).min().unwrap_or(0);
            // Indentation is ASCII spaces and tabs only, so `common` is a char boundary of every non-blank line.
            lines.map(|l| if is_blank(l) { "" } else { &l[common..] }).collect()
        }
    }
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

fn indent_of(line: &str) -> &str {
    let width = line.len() - line.trim_start_matches([' ', '\t']).len();
    &line[..width]
}

fn first_text<'a>(old_lines: &[&'a str]) -> &'a str {
    old_lines.iter().copied().find(|l| !is_blank(l)).unwrap_or("")
}

/// The indentation of the file line that matched `old`'s first non-blank line.
fn indent_of_block<'a>(block: &[Line<'a>], old_lines: &[&str]) -> &'a str {
    let offset = old_lines.iter().position(|l| !is_blank(l)).unwrap_or(0);
    block.get(offset).map_or("", |l| indent_of(l.text))
}

/// Moves `new` from `old`'s indentation to the file's: a line that starts with `from` gets `to` in its place
/// (which also converts tabs to spaces or back); any other non-blank line is shifted by the difference in length.
fn reindent(new: &str, to: &str, from: &str) -> String {
    if to == from {
        return new.to_owned();
    }
    let lines: Vec<String> = new.split('\n').map(|line| reindent_line(line, to, from)).collect();
    lines.join("\n")
}

fn reindent_line(line: &str, to: &str, from: &str) -> String {
    if is_blank(line) {
        return line.to_owned();
    }
    if let Some(rest) = line.strip_prefix(from) {
        return format!("{to}{rest}");
    }
    if to.len() > from.len() {
        return format!("{}{line}", &to[..to.len() - from.len()]);
    }
    let removable = indent_of(line).len().min(from.len() - to.len());
    line[removable..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Expected<'a> = Result<(&'a str, usize, Strategy), MatchError>;

    fn check(content: &str, old: &str, new: &str, replace_all: bool, expected: Expected<'_>) {
        let got = replace(content, old, new, replace_all);
        let expected = expected.map(|(content, replacements, strategy)| Replaced {
            content: content.to_owned(),
            replacements,
            strategy,
        });
        assert_eq!(got, expected, "content {content:?}, old {old:?}, new {new:?}");
    }

    use MatchError::*;
    use Strategy::*;

    #[test]
    fn guards() {
        check("abc", "", "x", false, Err(EmptyOld));
        check("abc", "b", "b", false, Err(NoChange));
        check("abc", "z", "x", false, Err(NotFound));
        check("", "z", "x", false, Err(NotFound));
        check("a\n  \nb", "  ", "x", false, Ok(("a\nx\nb", 1, Exact)));
        check("a\n\nb\n\n", "   ", "x", false, Err(NotFound));
    }

    #[test]
    fn exact() {
        check("let a = 1;\nlet b = 2;\n", "b = 2", "b = 3", false, Ok(("let a = 1;\nlet b = 3;\n", 1, Exact)));
        check("x y x", "x", "z", false, Err(Ambiguous { count: 2 }));
        check("x y x", "x", "z", true, Ok(("z y z", 2, Exact)));
        check("aaa", "aa", "b", true, Ok(("ba", 1, Exact)));
    }

    #[test]
    fn ambiguous_message_guides_the_model() {
        let err = replace("a a a", "a", "b", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "oldString appears 3 times; add surrounding lines to make it unique or set replaceAll"
        );
    }

    #[test]
    fn trimmed_lines() {
        // Trailing spaces in the file that the model did not copy.
        check(
            "fn f() {   \n    body();\n}\n",
            "fn f() {\n    body();",
            "fn g() {\n    body();",
            false,
            Ok(("fn g() {\n    body();\n}\n", 1, LineTrimmed)),
        );
        // Relative indentation differs, so only the trimmed comparison matches.
        check(
            "if x {\n        y();\n}\n",
            "if x {\n    y();\n}",
            "if z {\n    y();\n}",
            false,
            Ok(("if z {\n    y();\n}\n", 1, LineTrimmed)),
        );
    }

    #[test]
    fn different_indentation_is_reapplied() {
        let content = "mod m {\n    fn f() {\n        a();\n    }\n}\n";
        check(
            content,
            "fn f() {\n    a();\n}",
            "fn f() {\n    b();\n    c();\n}",
            false,
            Ok(("mod m {\n    fn f() {\n        b();\n        c();\n    }\n}\n", 1, IndentationFlexible)),
        );
        // Over-indented `old`: the replacement moves left by the same amount.
        check(
            "fn f() {\n    a();\n}\n",
            "        a();",
            "        b();\n        c();",
            false,
            Ok(("fn f() {\n    b();\n    c();\n}\n", 1, IndentationFlexible)),
        );
        // Tabs in the file, spaces from the model.
        check(
            "fn f() {\n\ta();\n}\n",
            "    a();",
            "    b();",
            false,
            Ok(("fn f() {\n\tb();\n}\n", 1, IndentationFlexible)),
        );
        // Blank lines inside the block match regardless of their whitespace and stay as written.
        check("  a\n\n  b\n", "a\n  \nb", "a\n\nc", false, Ok(("  a\n\n  c\n", 1, IndentationFlexible)));
    }

    #[test]
    fn stricter_strategy_disambiguates() {
        // Both blocks match trimmed; only the first keeps `old`'s relative indentation.
        let content = "  if x:\n      y\n  if x:\n  y\n";
        check(
            content,
            "if x:\n    y",
            "if x:\n    z",
            false,
            Ok(("  if x:\n      z\n  if x:\n  y\n", 1, IndentationFlexible)),
        );
    }

    #[test]
    fn line_based_ambiguity_and_replace_all() {
        let content = "  a\n  b\n\n    a\n    b\n";
        check(content, "a\nb", "c", false, Err(Ambiguous { count: 2 }));
        check(content, "a\nb", "c", true, Ok(("  c\n\n    c\n", 2, IndentationFlexible)));
    }

    #[test]
    fn trailing_newlines() {
        // `old` with a line break: the matched line's break goes with it.
        check("  a\n  b\n", "    a\n", "", false, Ok(("  b\n", 1, IndentationFlexible)));
        check("  a\n  b\n", "    a\n", "    c\n", false, Ok(("  c\n  b\n", 1, IndentationFlexible)));
        // A match at the end of a file without a final newline keeps it without one.
        check("x\n  a", "a\n", "c\n", false, Ok(("x\n  c", 1, IndentationFlexible)));
        check("x\n  a", "    a", "    c", false, Ok(("x\n  c", 1, IndentationFlexible)));
        check("x\n  a", "a\n", "", false, Ok(("x\n", 1, IndentationFlexible)));
    }

    #[test]
    fn crlf_does_not_panic() {
        check("a\r\nb\r\n", "a\nb", "c", false, Ok(("c\r\n", 1, IndentationFlexible)));
        check("a\r\n  b\r\n", "   b\r\n", "   c\r\n", false, Ok(("a\r\n  c\r\n", 1, IndentationFlexible)));
        let _ = replace("\r\n\r", "\r", "\n", false);
        let _ = replace("\r\n\r\n", "\n\r\n", "x", true);
    }

    #[test]
    fn unicode() {
        check("héllo wörld", "wörld", "мир", false, Ok(("héllo мир", 1, Exact)));
        check("\u{a0}ünï\n", "ünï  ", "x", false, Ok(("x\n", 1, LineTrimmed)));
        check("  日本\n  語\n", "日本\n語", "中文\n字", false, Ok(("  中文\n  字\n", 1, IndentationFlexible)));
    }
}
