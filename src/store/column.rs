//! Enums in read-model columns: stored as their wire names, so the SQL stays readable and matches the events.

use serde::Serialize;

use super::Result;

/// The wire name of a unit enum variant, e.g. `waiting_approval`.
pub(super) fn text<T: Serialize>(value: &T) -> Result<String> {
    match serde_json::to_value(value)? {
        serde_json::Value::String(name) => Ok(name),
        other => Err(super::Error::Json(serde::ser::Error::custom(format!("not a name: {other}")))),
    }
}
