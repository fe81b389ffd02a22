//! Enums in read-model columns: stored as their wire names, so the SQL stays readable and matches the events.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Result;

/// The wire name of a unit enum variant, e.g. `waiting_approval`.
pub(super) fn text<T: Serialize>(value: &T) -> Result<String> {
    match serde_json::to_value(value)? {
        serde_json::Value::String(name) => Ok(name),
        other => Err(super::Error::Json(serde::ser::Error::custom(format!("not a name: {other}")))),
    }
}

/// Reads column `idx` as a wire name; a name this engine does not know is a conversion error, not a default.
pub(super) fn parse<T: DeserializeOwned>(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let name: String = row.get(idx)?;
    serde_json::from_value(serde_json::Value::String(name))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
}

/// Like `parse`, for a nullable column.
pub(super) fn parse_opt<T: DeserializeOwned>(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<T>> {
    let name: Option<String> = row.get(idx)?;
    name.map(|name| {
        serde_json::from_value(serde_json::Value::String(name))
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
    })
    .transpose()
}
