//! Markdown files with front matter (agents, skills, commands): a `---` block of simple YAML (`key: value`, nested
//! maps by indentation, `- item` lists, quoted strings) and the body after it. Enough for what opencode, Claude Code
//! and keel write in these files; anything richer is read as a string.

use serde_json::{Map, Value};

/// A markdown file's front matter (an object, empty when there is none) and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub front: Map<String, Value>,
    pub body: String,
}

pub fn parse(text: &str) -> Document {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return Document { front: Map::new(), body: text.trim().to_owned() };
    }
    let mut header = Vec::new();
    let mut closed = false;
    for line in lines.by_ref() {
        if line.trim_end() == "---" {
            closed = true;
            break;
        }
        header.push(line);
    }
    if !closed {
        return Document { front: Map::new(), body: text.trim().to_owned() };
    }
    let body = lines.collect::<Vec<_>>().join("\n").trim().to_owned();
    let mut at = 0;
    let front = match block(&header, &mut at, 0) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    Document { front, body }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn meaningful(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The block of lines at `indent` or deeper from `at`: a list when it starts with `- `, a map otherwise.
fn block(lines: &[&str], at: &mut usize, level: usize) -> Value {
    while *at < lines.len() && !meaningful(lines[*at]) {
        *at += 1;
    }
    let Some(first) = lines.get(*at) else { return Value::Null };
    if first.trim_start().starts_with("- ") || first.trim() == "-" {
        let mut items = Vec::new();
        while *at < lines.len() {
            let line = lines[*at];
            if !meaningful(line) {
                *at += 1;
                continue;
            }
            if indent(line) < level || !line.trim_start().starts_with('-') {
                break;
            }
            *at += 1;
            items.push(scalar(line.trim_start().trim_start_matches('-').trim()));
        }
        return Value::Array(items);
    }
    let mut map = Map::new();
    while *at < lines.len() {
        let line = lines[*at];
        if !meaningful(line) {
            *at += 1;
            continue;
        }
        if indent(line) < level {
            break;
        }
        *at += 1;
        let Some((key, rest)) = line.trim().split_once(':') else { continue };
        let key = unquote(key.trim());
        let rest = rest.trim();
        let value = if rest.is_empty() {
            // A nested block is indented deeper; a list may also sit at the key's own indent.
            match lines[*at..].iter().find(|l| meaningful(l)) {
                Some(next)
                    if indent(next) > indent(line)
                        || (indent(next) == indent(line) && next.trim_start().starts_with('-')) =>
                {
                    block(lines, at, indent(next))
                }
                _ => Value::Null,
            }
        } else if rest == "|" || rest == ">" {
            let mut text = Vec::new();
            while *at < lines.len() && (lines[*at].trim().is_empty() || indent(lines[*at]) > indent(line)) {
                text.push(lines[*at].trim());
                *at += 1;
            }
            let joined = if rest == "|" { text.join("\n") } else { text.join(" ") };
            Value::String(joined.trim().to_owned())
        } else {
            scalar(rest)
        };
        map.insert(key, value);
    }
    Value::Object(map)
}

fn unquote(text: &str) -> String {
    let quoted = text.len() >= 2
        && ((text.starts_with('"') && text.ends_with('"')) || (text.starts_with('\'') && text.ends_with('\'')));
    if quoted { text[1..text.len() - 1].to_owned() } else { text.to_owned() }
}

fn scalar(text: &str) -> Value {
    let text = match text.find(" #") {
        Some(i) if !text.starts_with('"') && !text.starts_with('\'') => text[..i].trim(),
        _ => text,
    };
    match text {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        "null" | "~" | "" => return Value::Null,
        _ => {}
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return Value::Array(inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(scalar).collect());
    }
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    if let Ok(n) = text.parse::<f64>() {
        return Value::from(n);
    }
    Value::String(unquote(text))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(text: &str, front: Value, body: &str) {
        let doc = parse(text);
        assert_eq!(Value::Object(doc.front), front, "{text}");
        assert_eq!(doc.body, body, "{text}");
    }

    #[test]
    fn front_matter() {
        check("no front matter\n", json!({}), "no front matter");
        check("---\nunclosed: yes\nbody", json!({}), "---\nunclosed: yes\nbody");
        check(
            "---\ndescription: Reviews code # why\nmodel: \"mock/m\"\nsteps: 5\ntemperature: 0.2\nhidden: false\n---\n\nYou review.\n",
            json!({ "description": "Reviews code", "model": "mock/m", "steps": 5, "temperature": 0.2, "hidden": false }),
            "You review.",
        );
        check(
            "---\ntools:\n  bash: false\n  edit: false\npermission:\n  edit: deny\n  bash:\n    \"git *\": allow\n---\nbody",
            json!({ "tools": { "bash": false, "edit": false },
                    "permission": { "edit": "deny", "bash": { "git *": "allow" } } }),
            "body",
        );
        check(
            "---\ntools:\n  - read\n  - grep\nallowed: [a, b]\ndescription: |\n  two\n  lines\n---\n",
            json!({ "tools": ["read", "grep"], "allowed": ["a", "b"], "description": "two\nlines" }),
            "",
        );
    }
}
