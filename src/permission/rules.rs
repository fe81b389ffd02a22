//! Ordered rules `{action, pattern, effect}`: the last rule that matches decides; no match asks.

use crate::config::{Effect, PermissionRule};

/// `*` matches any run of characters (slashes and spaces included), `?` one character.
/// A pattern ending in ` *` also matches the bare command, so `git status *` allows `git status`.
pub fn matches(pattern: &str, text: &str) -> bool {
    if wildcard(pattern, text) {
        return true;
    }
    pattern.strip_suffix(" *").is_some_and(|bare| wildcard(bare, text))
}

fn wildcard(pattern: &str, text: &str) -> bool {
    // On bytes, without allocating: it runs for every rule on every resource of every call. `?` is one byte,
    // which is one character for the ASCII paths and commands rules are written for. `\*`, `\?` and `\\` are
    // literal, which is how rules stored from `always` answers keep the exact text that was approved.
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let (literal, width) = match p.get(pi) {
            Some(b'\\') if pi + 1 < p.len() => (Some(p[pi + 1]), 2),
            Some(b'*') => (None, 1),
            Some(b'?') => (Some(b'?'), 0),
            Some(&c) => (Some(c), 1),
            None => (None, 0),
        };
        match (p.get(pi), literal) {
            (Some(b'?'), _) if width == 0 => {
                pi += 1;
                ti += 1;
                continue;
            }
            (Some(b'*'), None) => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            (Some(_), Some(c)) if c == t[ti] => {
                pi += width;
                ti += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// A pattern that matches exactly `text`.
pub fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The effect of the last rule matching `action` and `resource`; `Ask` when none does.
pub fn evaluate(rules: &[PermissionRule], action: &str, resource: &str) -> Effect {
    rules
        .iter()
        .rev()
        .find(|r| matches(&r.action, action) && matches(&r.pattern, resource))
        .map_or(Effect::Ask, |r| r.effect)
}

/// Rules every agent starts from; config and stored project rules come after them and win.
pub fn defaults() -> Vec<PermissionRule> {
    let rule =
        |action: &str, pattern: &str, effect| PermissionRule { action: action.into(), pattern: pattern.into(), effect };
    let mut rules = vec![
        rule("read", "*", Effect::Allow),
        rule("list", "*", Effect::Allow),
        rule("grep", "*", Effect::Allow),
        rule("glob", "*", Effect::Allow),
        rule("todowrite", "*", Effect::Allow),
        rule("skill", "*", Effect::Allow),
        rule("task", "*", Effect::Allow),
        rule("edit", "*", Effect::Ask),
        rule("bash", "*", Effect::Ask),
        rule("webfetch", "*", Effect::Ask),
        rule("external_directory", "*", Effect::Ask),
        rule("doom_loop", "*", Effect::Ask),
    ];
    rules.extend(looking_commands());
    rules
}

/// Commands that only look: allowed without asking.
pub fn looking_commands() -> Vec<PermissionRule> {
    ["ls *", "pwd", "git status *", "git diff *", "git log *", "git show *", "echo *", "which *"]
        .into_iter()
        .map(|command| PermissionRule { action: "bash".into(), pattern: command.into(), effect: Effect::Allow })
        .collect()
}

/// Dotenv files hold secrets: touching them asks even when a broad rule (`read *`) allows everything else. These
/// rules go after all others; a rule that names `.env` itself takes them over.
pub fn guards(configured: &[PermissionRule]) -> Vec<PermissionRule> {
    let rule =
        |action: &str, pattern: &str, effect| PermissionRule { action: action.into(), pattern: pattern.into(), effect };
    let mut rules = Vec::new();
    for action in ["read", "edit"] {
        if configured.iter().any(|r| r.pattern.contains(".env") && matches(&r.action, action)) {
            continue;
        }
        for pattern in [".env", "*/.env", ".env.*", "*/.env.*"] {
            rules.push(rule(action, pattern, Effect::Ask));
        }
        rules.push(rule(action, "*.env.example", Effect::Allow));
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let check = |pattern: &str, text: &str, expected: bool| {
            assert_eq!(matches(pattern, text), expected, "{pattern:?} vs {text:?}");
        };
        check("*", "anything/at all", true);
        check("git status *", "git status", true);
        check("git status *", "git status --short", true);
        check("git status *", "git statusx", false);
        check("src/*.rs", "src/a/b.rs", true);
        check("*.env", "config/.env", true);
        check("?.txt", "ab.txt", false);
        check("a*b*c", "a-b-b-c", true);
        check("a*b*c", "a-b-b-d", false);
        check("", "", true);
        check(&literal("rm -f *.o"), "rm -f *.o", true);
        check(&literal("rm -f *.o"), "rm -f -r ~ x.o", false);
        check(&literal("a?b\\c"), "a?b\\c", true);
        check(&literal("a?b"), "axb", false);
    }

    #[test]
    fn last_match_wins_and_no_match_asks() {
        let mut rules = defaults();
        rules.extend(guards(&[]));
        assert_eq!(evaluate(&rules, "read", "src/main.rs"), Effect::Allow);
        assert_eq!(evaluate(&rules, "read", ".env"), Effect::Ask);
        assert_eq!(evaluate(&rules, "read", "app/.env.local"), Effect::Ask);
        assert_eq!(evaluate(&rules, "read", ".env.example"), Effect::Allow);
        assert_eq!(evaluate(&rules, "bash", "git status"), Effect::Allow);
        assert_eq!(evaluate(&rules, "bash", "rm -rf /"), Effect::Ask);
        assert_eq!(evaluate(&rules, "mcp_tool", "x"), Effect::Ask);
        rules.push(PermissionRule { action: "bash".into(), pattern: "rm *".into(), effect: Effect::Deny });
        assert_eq!(evaluate(&rules, "bash", "rm -rf /"), Effect::Deny);
        rules.push(PermissionRule { action: "*".into(), pattern: "*".into(), effect: Effect::Allow });
        assert_eq!(evaluate(&rules, "bash", "rm -rf /"), Effect::Allow);
    }
}
