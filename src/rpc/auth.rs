//! Who may use a listener: the shared token and, for WebSocket upgrades from browsers, the page's origin.

/// Compared in full, without an early exit, so the time taken says nothing about the token.
pub fn tokens_match(given: &str, required: &str) -> bool {
    let (given, required) = (given.as_bytes(), required.as_bytes());
    given.len() == required.len() && given.iter().zip(required).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Whether a browser page at `origin` may open a connection. No `Origin` header means no browser (a script, an
/// editor), which the token and the bind address govern; pages served from this machine's loopback are allowed, so
/// are the origins listed with `--allow-origin`; any other page could be a site the user merely visited.
pub fn origin_allowed(origin: Option<&str>, allow_list: &[String]) -> bool {
    let Some(origin) = origin else { return true };
    if allow_list.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    if !matches!(scheme, "http" | "https") {
        return false;
    }
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(host, _)| host),
        None => Some(rest.split(':').next().unwrap_or_default()),
    };
    matches!(host, Some(h) if h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_match_exactly() {
        assert!(tokens_match("s3cret", "s3cret"));
        assert!(!tokens_match("s3cre", "s3cret"));
        assert!(!tokens_match("s3creT", "s3cret"));
        assert!(!tokens_match("", "s3cret"));
    }

    #[test]
    fn origins_from_loopback_or_the_allow_list_pass() {
        let allow = vec!["https://panel.example".to_owned()];
        for ok in [
            None,
            Some("http://localhost:5173"),
            Some("http://127.0.0.1"),
            Some("http://127.8.0.1:80"),
            Some("http://[::1]:3000"),
            Some("https://panel.example"),
        ] {
            assert!(origin_allowed(ok, &allow), "{ok:?}");
        }
        for refused in [
            Some("https://evil.example"),
            Some("http://localhost.evil.example"),
            Some("http://127.0.0.1.evil.example"),
            Some("null"),
            Some("file://"),
            Some("https://panel.example.evil"),
        ] {
            assert!(!origin_allowed(refused, &allow), "{refused:?}");
        }
    }
}
