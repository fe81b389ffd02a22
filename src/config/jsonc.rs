//! JSONC: JSON with `//` and `/* */` comments and trailing commas, turned into plain JSON text.

/// Removes comments and trailing commas outside strings; everything else is kept byte for byte, so serde's error
/// positions still point at the right line.
pub fn to_json(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            let ch_len = utf8_len(c);
            out.push_str(&text[i..i + ch_len]);
            if c == b'\\' && i + 1 < bytes.len() {
                let next_len = utf8_len(bytes[i + 1]);
                out.push_str(&text[i + 1..i + 1 + next_len]);
                i += 1 + next_len;
                continue;
            }
            if c == b'"' {
                in_string = false;
            }
            i += ch_len;
            continue;
        }
        match c {
            b'"' => {
                in_string = true;
                out.push('"');
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    if bytes[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
                i += 2;
            }
            b',' => {
                let mut j = i + 1;
                // A comma followed (past blanks and comments) by a closing bracket is dropped.
                loop {
                    while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if bytes.get(j) == Some(&b'/') && bytes.get(j + 1) == Some(&b'/') {
                        while j < bytes.len() && bytes[j] != b'\n' {
                            j += 1;
                        }
                        continue;
                    }
                    if bytes.get(j) == Some(&b'/') && bytes.get(j + 1) == Some(&b'*') {
                        j += 2;
                        while j < bytes.len() && !(bytes[j] == b'*' && bytes.get(j + 1) == Some(&b'/')) {
                            j += 1;
                        }
                        j += 2;
                        continue;
                    }
                    break;
                }
                if !matches!(bytes.get(j), Some(b'}') | Some(b']')) {
                    out.push(',');
                }
                i += 1;
            }
            _ => {
                let ch_len = utf8_len(c);
                out.push_str(&text[i..i + ch_len]);
                i += ch_len;
            }
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: serde_json::Value) {
        let json = to_json(input);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(parsed, expected);
    }

    #[test]
    fn comments_and_trailing_commas() {
        check("{\"a\": 1, // one\n \"b\": [1, 2,], /* x */ }", serde_json::json!({ "a": 1, "b": [1, 2] }));
        check(
            "{\"url\": \"http://x//y\", \"s\": \"a /* b */ \\\" c\",}",
            serde_json::json!({ "url": "http://x//y", "s": "a /* b */ \" c" }),
        );
        check("{\"é\": \"ü\" /* ü */,\n}", serde_json::json!({ "é": "ü" }));
        check("[1, // c\n]", serde_json::json!([1]));
    }
}
