//! The process's known secrets and the one scrubber that keeps them out of everything keel records or sends.
//!
//! A secret is known once keel has read it: a provider key from the environment, the auth store or a provider's
//! config (`apiKey`, headers, whatever `{env:}`/`{file:}` substitution produced them), or any environment variable
//! whose name says it holds a credential. Every event is scrubbed as it is appended, and provider errors as they
//! are made, so a key echoed by a server, printed by a command or read from a file never leaves as itself.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use aho_corasick::AhoCorasick;
use parking_lot::RwLock;

/// What a secret becomes.
pub const REDACTED: &str = "[redacted]";

/// Shorter values are not treated as secrets: scrubbing `abc` would mangle ordinary text.
const MIN_LEN: usize = 8;

#[derive(Default)]
struct Known {
    values: BTreeSet<String>,
    matcher: Option<Arc<AhoCorasick>>,
}

static KNOWN: LazyLock<RwLock<Known>> = LazyLock::new(RwLock::default);

/// Whether an environment variable's name says it holds a credential: one of its `_`-separated words is `KEY`,
/// `TOKEN`, `SECRET`, `PASSWORD` or the like (`OPENAI_API_KEY`, `GH_TOKEN`, `AWS_SECRET_ACCESS_KEY`; not
/// `GIT_AUTHOR_NAME` or `KEYBOARD`). Child processes never inherit these.
pub fn is_secret_name(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "KEY",
        "KEYS",
        "APIKEY",
        "TOKEN",
        "TOKENS",
        "SECRET",
        "SECRETS",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "CREDENTIALS",
    ];
    name.split(['_', '-', '.']).any(|word| WORDS.iter().any(|w| word.eq_ignore_ascii_case(w)))
}

/// Remembers `value` as a secret from now on.
pub fn remember(value: &str) {
    remember_all(std::iter::once(value));
}

/// Remembers several secrets at once: the matcher is rebuilt once, not once per value.
fn remember_all<'a>(values: impl IntoIterator<Item = &'a str>) {
    let fresh: Vec<&str> = {
        let known = KNOWN.read();
        values.into_iter().map(str::trim).filter(|v| v.len() >= MIN_LEN && !known.values.contains(*v)).collect()
    };
    if fresh.is_empty() {
        return;
    }
    let mut known = KNOWN.write();
    known.values.extend(fresh.into_iter().map(str::to_owned));
    // Longest first, so that a secret containing another is replaced whole.
    let mut patterns: Vec<&String> = known.values.iter().collect();
    patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
    known.matcher =
        AhoCorasick::builder().match_kind(aho_corasick::MatchKind::LeftmostLongest).build(patterns).ok().map(Arc::new);
}

/// Remembers the values of the environment's credential variables.
pub fn remember_environment() {
    let values: Vec<String> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, _)| is_secret_name(name))
        .map(|(_, value)| value)
        .collect();
    remember_all(values.iter().map(String::as_str));
}

/// `text` with every known secret replaced by `[redacted]`; borrowed when there was none.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Some(matcher) = KNOWN.read().matcher.clone() else { return Cow::Borrowed(text) };
    if !matcher.is_match(text) {
        return Cow::Borrowed(text);
    }
    let replacements = vec![REDACTED; matcher.patterns_len()];
    Cow::Owned(matcher.replace_all(text, &replacements))
}

/// Like `scrub`, for a string that is owned already.
pub fn scrub_owned(text: String) -> String {
    match scrub(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(scrubbed) => scrubbed,
    }
}

/// Takes credential values out of the process's original environment block, which `/proc/<pid>/environ` shows
/// to any process of the same user (and to root whatever the dumpable flag says). Each value moves to a copy on
/// the heap that `std::env` keeps reading; the original bytes are overwritten.
///
/// # Safety
/// Call at the very start of `main`, before any thread exists: it changes the environment.
#[cfg(target_os = "linux")]
pub unsafe fn hide_environment() {
    unsafe extern "C" {
        static environ: *const *mut libc::c_char;
    }
    let mut originals = Vec::new();
    // SAFETY: `environ` is a null-terminated array of C strings that nothing else touches while one thread runs.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            let text = std::ffi::CStr::from_ptr(*entry).to_bytes();
            if let Some(eq) = text.iter().position(|b| *b == b'=')
                && let Ok(name) = std::str::from_utf8(&text[..eq])
                && is_secret_name(name)
                && text.len() > eq + 1
            {
                originals.push((name.to_owned(), (*entry).add(eq + 1), text.len() - eq - 1));
            }
            entry = entry.add(1);
        }
    }
    for (name, value, len) in originals {
        let Some(copy) = std::env::var_os(&name) else { continue };
        // SAFETY: single-threaded (the caller's promise); `set_var` makes glibc point the entry at a fresh copy,
        // after which the original bytes belong to nobody and can be overwritten within their length.
        unsafe {
            std::env::set_var(&name, &copy);
            std::ptr::write_bytes(value, b'*', len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_are_replaced_and_short_values_ignored() {
        remember("sk-test-0123456789abcdef");
        remember("sk-test-0123456789abcdef-longer");
        remember("short");
        assert_eq!(scrub("key sk-test-0123456789abcdef!"), "key [redacted]!");
        assert_eq!(scrub("sk-test-0123456789abcdef-longer"), "[redacted]");
        assert_eq!(scrub("a short text"), "a short text");
        assert!(matches!(scrub("nothing here"), Cow::Borrowed(_)));
        assert!(is_secret_name("OPENAI_API_KEY") && is_secret_name("github_token") && is_secret_name("x-api-key"));
        assert!(!is_secret_name("PATH") && !is_secret_name("GIT_AUTHOR_NAME") && !is_secret_name("KEYBOARD"));
    }
}
