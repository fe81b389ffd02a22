//! Parsing `params` as one object, with the path of the offending field in the error.

use serde::de::DeserializeOwned;

use super::ApiError;

pub fn parse<P: DeserializeOwned>(raw: Option<&str>) -> Result<P, ApiError> {
    let raw = raw.unwrap_or("null");
    let mut de = serde_json::Deserializer::from_str(raw);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde_json appends the position, which says nothing useful about a single params object.
        let message = message.split(" at line ").next().unwrap_or_default().to_owned();
        let path = match (field_in(&message), at.as_str()) {
            (Some(field), ".") => field.to_owned(),
            (Some(field), parent) => format!("{parent}.{field}"),
            (None, ".") if raw == "null" => return ApiError::invalid("params", "missing params"),
            (None, ".") => String::new(),
            (None, path) => path.to_owned(),
        };
        ApiError::InvalidParams { path, message }
    })
}

/// The field named by serde's "missing field `x`" and "unknown field `x`" messages.
fn field_in(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `").or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use keel_protocol::session::{SessionCreateParams, SessionListParams};

    use super::*;

    fn check<P: DeserializeOwned + std::fmt::Debug>(raw: Option<&str>, expected_path: &str) {
        match parse::<P>(raw) {
            Err(ApiError::InvalidParams { path, .. }) => {
                assert_eq!(path, expected_path, "for {raw:?}")
            }
            other => panic!("expected invalid params for {raw:?}, got {other:?}"),
        }
    }

    #[test]
    fn names_the_bad_field() {
        check::<SessionCreateParams>(Some(r#"{"title":"x"}"#), "cwd");
        check::<SessionCreateParams>(Some(r#"{"cwd":7}"#), "cwd");
        check::<SessionCreateParams>(None, "params");
        check::<SessionListParams>(Some(r#"{"limit":"ten"}"#), "limit");
    }

    #[test]
    fn optional_params_accept_absence() {
        assert!(parse::<Option<SessionListParams>>(None).unwrap().is_none());
    }
}
