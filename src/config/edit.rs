//! Edits JSONC text in place: one value set or removed, every other byte (comments, order, layout) kept.
//!
//! A small scanner over the text finds the span of each member of an object; an edit splices the text at those
//! spans. Only objects are walked: a path through an array or a scalar replaces it with an object.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EditError {
    #[error("not valid JSONC at byte {at}: {reason}")]
    Syntax { at: usize, reason: &'static str },
    #[error("the path is empty or has an empty key")]
    EmptyPath,
}

/// Sets `keys` to `value`, creating the objects on the way.
pub fn set(text: &str, keys: &[String], value: &Value) -> Result<String, EditError> {
    if keys.is_empty() || keys.iter().any(String::is_empty) {
        return Err(EditError::EmptyPath);
    }
    let start = top(text)?;
    let mut object = parse_object(text, start)?;
    for (depth, key) in keys.iter().enumerate() {
        let rest = &keys[depth + 1..];
        let Some(member) = object.members.iter().find(|m| &m.key == key) else {
            return Ok(insert(text, &object, key, &nest(rest, value)));
        };
        if rest.is_empty() || text.as_bytes()[member.value.0] != b'{' {
            let indent = line_indent(text, member.key_start);
            let rendered = render(&nest(rest, value), indent, unit(text, &object));
            return Ok(splice(text, member.value.0, member.value.1, &rendered));
        }
        object = parse_object(text, member.value.0)?;
    }
    Ok(text.to_owned())
}

/// Removes `keys`; `None` when it is not there.
pub fn unset(text: &str, keys: &[String]) -> Result<Option<String>, EditError> {
    if keys.is_empty() || keys.iter().any(String::is_empty) {
        return Err(EditError::EmptyPath);
    }
    let mut object = parse_object(text, top(text)?)?;
    for (depth, key) in keys.iter().enumerate() {
        let Some(member) = object.members.iter().find(|m| &m.key == key) else { return Ok(None) };
        if depth + 1 == keys.len() {
            return Ok(Some(remove(text, member)));
        }
        if text.as_bytes()[member.value.0] != b'{' {
            return Ok(None);
        }
        object = parse_object(text, member.value.0)?;
    }
    Ok(None)
}

struct Member {
    key: String,
    key_start: usize,
    /// The value's bytes, `[start, end)`.
    value: (usize, usize),
}

struct Object {
    open: usize,
    close: usize,
    members: Vec<Member>,
}

fn top(text: &str) -> Result<usize, EditError> {
    let at = skip_blank(text, 0)?;
    match text.as_bytes().get(at) {
        Some(b'{') => Ok(at),
        _ => Err(EditError::Syntax { at, reason: "the top level must be an object" }),
    }
}

/// Skips whitespace and comments.
fn skip_blank(text: &str, mut i: usize) -> Result<usize, EditError> {
    let b = text.as_bytes();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) == Some(&b'/') && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b.get(i) == Some(&b'/') && b.get(i + 1) == Some(&b'*') {
            let end = text[i + 2..].find("*/").ok_or(EditError::Syntax { at: i, reason: "unclosed comment" })?;
            i += 2 + end + 2;
        } else {
            return Ok(i);
        }
    }
}

fn skip_string(text: &str, mut i: usize) -> Result<usize, EditError> {
    let b = text.as_bytes();
    let start = i;
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(EditError::Syntax { at: start, reason: "unclosed string" })
}

fn skip_value(text: &str, i: usize) -> Result<usize, EditError> {
    let b = text.as_bytes();
    match b.get(i) {
        Some(b'"') => skip_string(text, i),
        Some(b'{') | Some(b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                j = skip_blank(text, j)?;
                match b.get(j) {
                    Some(b'"') => {
                        j = skip_string(text, j)?;
                        continue;
                    }
                    Some(b'{') | Some(b'[') => depth += 1,
                    Some(b'}') | Some(b']') => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err(EditError::Syntax { at: i, reason: "unclosed object or array" })
        }
        Some(_) => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b'/') && !b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j == i {
                return Err(EditError::Syntax { at: i, reason: "a value was expected" });
            }
            Ok(j)
        }
        None => Err(EditError::Syntax { at: i, reason: "a value was expected" }),
    }
}

fn parse_object(text: &str, open: usize) -> Result<Object, EditError> {
    let b = text.as_bytes();
    let mut members = Vec::new();
    let mut i = open + 1;
    loop {
        i = skip_blank(text, i)?;
        match b.get(i) {
            Some(b'}') => return Ok(Object { open, close: i, members }),
            Some(b',') => i += 1,
            Some(b'"') => {
                let key_end = skip_string(text, i)?;
                let key: String = serde_json::from_str(&text[i..key_end])
                    .map_err(|_| EditError::Syntax { at: i, reason: "a bad key" })?;
                let colon = skip_blank(text, key_end)?;
                if b.get(colon) != Some(&b':') {
                    return Err(EditError::Syntax { at: colon, reason: "`:` was expected" });
                }
                let start = skip_blank(text, colon + 1)?;
                let end = skip_value(text, start)?;
                members.push(Member { key, key_start: i, value: (start, end) });
                i = end;
            }
            _ => return Err(EditError::Syntax { at: i, reason: "a key or `}` was expected" }),
        }
    }
}

/// `{"a": {"b": value}}` for the keys still missing below an existing object.
fn nest(keys: &[String], value: &Value) -> Value {
    keys.iter().rev().fold(value.clone(), |inner, key| {
        let mut map = serde_json::Map::new();
        map.insert(key.clone(), inner);
        Value::Object(map)
    })
}

fn splice(text: &str, start: usize, end: usize, with: &str) -> String {
    let mut out = String::with_capacity(text.len() + with.len());
    out.push_str(&text[..start]);
    out.push_str(with);
    out.push_str(&text[end..]);
    out
}

fn line_start(text: &str, pos: usize) -> usize {
    text[..pos].rfind('\n').map_or(0, |i| i + 1)
}

fn line_end(text: &str, pos: usize) -> usize {
    text[pos..].find('\n').map_or(text.len(), |i| pos + i)
}

/// The whitespace that starts the line holding `pos`.
fn line_indent(text: &str, pos: usize) -> &str {
    let start = line_start(text, pos);
    let line = &text[start..];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

/// The file's indentation step, guessed from an object's first member (two spaces when there is none).
fn unit(text: &str, object: &Object) -> String {
    object
        .members
        .first()
        .filter(|m| is_first_on_line(text, m.key_start))
        .map(|m| line_indent(text, m.key_start).len().saturating_sub(line_indent(text, object.open).len()))
        .filter(|n| *n > 0)
        .map_or_else(|| "  ".to_owned(), |n| " ".repeat(n))
}

fn is_first_on_line(text: &str, pos: usize) -> bool {
    text[line_start(text, pos)..pos].trim().is_empty()
}

/// Pretty JSON whose continuation lines start at `indent`.
fn render(value: &Value, indent: &str, unit: String) -> String {
    let mut bytes = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
    if value.serialize(&mut serializer).is_err() {
        return value.to_string();
    }
    let pretty = String::from_utf8_lossy(&bytes);
    pretty.lines().collect::<Vec<_>>().join(&format!("\n{indent}"))
}

fn insert(text: &str, object: &Object, key: &str, value: &Value) -> String {
    let key = Value::String(key.to_owned()).to_string();
    let inline = !text[object.open..object.close].contains('\n');
    if inline {
        let member = format!("{key}: {value}");
        return match object.members.last() {
            Some(last) => splice(text, last.value.1, last.value.1, &format!(", {member}")),
            None => splice(text, object.open + 1, object.close, &format!(" {member} ")),
        };
    }
    let step = unit(text, object);
    let outer = line_indent(text, object.open);
    let indent = match object.members.first() {
        Some(first) if is_first_on_line(text, first.key_start) => line_indent(text, first.key_start).to_owned(),
        _ => format!("{outer}{step}"),
    };
    let member = format!("{key}: {}", render(value, &indent, step));
    match object.members.last() {
        Some(last) => {
            // After the last member's line (its comma and a trailing comment stay with it).
            let b = text.as_bytes();
            let mut i = last.value.1;
            while matches!(b.get(i), Some(b' ' | b'\t')) {
                i += 1;
            }
            let comma = b.get(i) == Some(&b',');
            let end = line_end(text, last.value.1);
            let rest_is_comment = {
                let rest = text[i + usize::from(comma)..end].trim();
                rest.is_empty() || rest.starts_with("//")
            };
            let at = if rest_is_comment { end } else { last.value.1 };
            let mut out = String::with_capacity(text.len() + member.len() + 8);
            out.push_str(&text[..last.value.1]);
            if !comma {
                out.push(',');
            }
            out.push_str(&text[last.value.1..at]);
            out.push('\n');
            out.push_str(&indent);
            out.push_str(&member);
            if !rest_is_comment && comma {
                out.push(',');
            }
            out.push_str(&text[at..]);
            out
        }
        None => {
            // Comments inside an empty object stay before the new member.
            let inside = text[object.open + 1..object.close].trim_end();
            splice(text, object.open + 1, object.close, &format!("{inside}\n{indent}{member}\n{outer}"))
        }
    }
}

fn remove(text: &str, member: &Member) -> String {
    let b = text.as_bytes();
    let mut end = member.value.1;
    while matches!(b.get(end), Some(b' ' | b'\t')) {
        end += 1;
    }
    let comma = b.get(end) == Some(&b',');
    if comma {
        end += 1;
    }
    let own_line = is_first_on_line(text, member.key_start);
    let mut start = member.key_start;
    if own_line {
        let mut j = end;
        while matches!(b.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        let rest = &text[j..line_end(text, j)];
        if rest.is_empty() || rest.starts_with("//") {
            start = line_start(text, member.key_start);
            end = (line_end(text, j) + 1).min(text.len());
        }
    } else if !comma {
        // `{ "a": 1, "b": 2 }` without `b`: its separating comma goes too.
        let before = text[..start].trim_end();
        if before.ends_with(',') {
            start = before.len() - 1;
        }
        end = member.value.1;
    } else {
        while matches!(b.get(end), Some(b' ')) {
            end += 1;
        }
    }
    splice(text, start, end, "")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn keys(path: &str) -> Vec<String> {
        path.split('.').map(str::to_owned).collect()
    }

    fn parses(text: &str) -> Value {
        serde_json::from_str(&super::super::jsonc::to_json(text)).unwrap_or_else(|e| panic!("{e}:\n{text}"))
    }

    const FILE: &str = "{\n  // the default model\n  \"model\": \"a/b\", // keep me\n  \"providers\": {\n    \"local\": { \"baseUrl\": \"http://x\" }\n  },\n  /* last */\n  \"instructions\": [\"A.md\"]\n}\n";

    #[test]
    fn replaces_a_value_and_keeps_every_comment() {
        let out = set(FILE, &keys("model"), &json!("c/d")).unwrap();
        assert_eq!(out, FILE.replace("\"a/b\"", "\"c/d\""));
    }

    #[test]
    fn adds_members_at_every_depth() {
        let out = set(FILE, &keys("providers.local.apiKey"), &json!("{env:K}")).unwrap();
        assert!(out.contains("\"local\": { \"baseUrl\": \"http://x\", \"apiKey\": \"{env:K}\" }"), "{out}");
        let out = set(&out, &keys("agents.build.steps"), &json!(7)).unwrap();
        assert!(
            out.contains(
                "  \"instructions\": [\"A.md\"],\n  \"agents\": {\n    \"build\": {\n      \"steps\": 7\n    }\n  }\n}"
            ),
            "{out}"
        );
        let out = set(&out, &keys("providers.remote"), &json!({ "wire": "anthropic" })).unwrap();
        assert!(out.contains("// keep me") && out.contains("/* last */") && out.contains("// the default model"));
        let v = parses(&out);
        assert_eq!(v["providers"]["remote"]["wire"], "anthropic");
        assert_eq!(v["providers"]["local"]["apiKey"], "{env:K}");
        assert_eq!(v["agents"]["build"]["steps"], 7);
    }

    #[test]
    fn insertion_after_a_commented_last_member_keeps_the_comment_on_its_line() {
        let text = "{\n  \"a\": 1 // one\n}";
        let out = set(text, &keys("b"), &json!(2)).unwrap();
        assert_eq!(out, "{\n  \"a\": 1, // one\n  \"b\": 2\n}");
        let text = "{\n  \"a\": 1, // one\n}";
        assert_eq!(set(text, &keys("b"), &json!(2)).unwrap(), "{\n  \"a\": 1, // one\n  \"b\": 2\n}");
    }

    #[test]
    fn empty_and_scalar_containers() {
        assert_eq!(set("{}", &keys("model"), &json!("x/y")).unwrap(), "{ \"model\": \"x/y\" }");
        assert_eq!(set("{\n}\n", &keys("model"), &json!("x/y")).unwrap(), "{\n  \"model\": \"x/y\"\n}\n");
        let out = set("{ \"mcp\": false }", &keys("mcp.fs.enabled"), &json!(true)).unwrap();
        assert_eq!(parses(&out), json!({ "mcp": { "fs": { "enabled": true } } }));
    }

    #[test]
    fn removes_members_with_their_line() {
        let out = unset(FILE, &keys("model")).unwrap().unwrap();
        assert_eq!(out, FILE.replace("  \"model\": \"a/b\", // keep me\n", ""));
        let out = unset(FILE, &keys("providers.local.baseUrl")).unwrap().unwrap();
        assert_eq!(parses(&out)["providers"]["local"], json!({}));
        let out = unset(FILE, &keys("instructions")).unwrap().unwrap();
        assert_eq!(parses(&out), json!({ "model": "a/b", "providers": { "local": { "baseUrl": "http://x" } } }));
        assert_eq!(unset("{ \"a\": 1, \"b\": 2 }", &keys("b")).unwrap().unwrap(), "{ \"a\": 1 }");
        assert_eq!(unset("{ \"a\": 1, \"b\": 2 }", &keys("a")).unwrap().unwrap(), "{ \"b\": 2 }");
        assert_eq!(unset(FILE, &keys("nothing.here")).unwrap(), None);
    }

    #[test]
    fn strings_with_braces_and_comment_markers_are_values() {
        let text = "{ \"s\": \"} // {\", \"t\": [1, {\"u\": \"]\"}] }";
        let out = set(text, &keys("v"), &json!(1)).unwrap();
        assert_eq!(parses(&out), json!({ "s": "} // {", "t": [1, { "u": "]" }], "v": 1 }));
        assert!(set("[1]", &keys("a"), &json!(1)).is_err());
        assert!(set("{ \"a\": ", &keys("a"), &json!(1)).is_err());
        assert_eq!(set("{}", &[], &json!(1)), Err(EditError::EmptyPath));
    }
}
