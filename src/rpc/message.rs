//! Outgoing JSON-RPC frames and the classification of incoming ones.

use serde::Serialize;
use serde_json::Value;

#[derive(Serialize)]
struct OutNotification<'a, P> {
    jsonrpc: &'static str,
    method: &'a str,
    params: &'a P,
}

#[derive(Serialize)]
struct OutRequest<'a, P> {
    jsonrpc: &'static str,
    id: &'a str,
    method: &'a str,
    params: &'a P,
}

#[derive(Serialize)]
struct OutError<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: i32,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

// Serializing these shapes cannot fail: every field is a string, a number or an already valid JSON value.
fn to_vec(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn notification(method: &str, params: &impl Serialize) -> Vec<u8> {
    to_vec(&OutNotification { jsonrpc: "2.0", method, params })
}

pub fn request(id: &str, method: &str, params: &impl Serialize) -> Vec<u8> {
    to_vec(&OutRequest { jsonrpc: "2.0", id, method, params })
}

pub fn error(id: &Value, code: i32, message: &str, data: Option<&Value>) -> Vec<u8> {
    to_vec(&OutError { jsonrpc: "2.0", id, error: ErrorBody { code, message, data } })
}

/// What an incoming frame is, decided by its shape.
#[derive(Debug)]
pub enum Incoming {
    Request { id: Value, method: String, params: Option<Value> },
    Notification { method: String, params: Option<Value> },
    Response { id: Value, result: Result<Value, (i64, String)> },
}

/// Why a frame is not a JSON-RPC message; carries the id to answer when one could be read.
#[derive(Debug)]
pub enum Invalid {
    Parse(String),
    Request { id: Value, reason: &'static str },
}

pub fn classify(bytes: &[u8]) -> Result<Incoming, Invalid> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| Invalid::Parse(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        let reason = if value.is_array() { "batches are not supported" } else { "a message must be an object" };
        return Err(Invalid::Request { id: Value::Null, reason });
    };
    let id = obj.remove("id");
    let valid_id = matches!(id, None | Some(Value::Null | Value::Number(_) | Value::String(_)));
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Invalid::Request {
            id: id.filter(|_| valid_id).unwrap_or(Value::Null),
            reason: "\"jsonrpc\" must be \"2.0\"",
        });
    }
    if !valid_id {
        return Err(Invalid::Request { id: Value::Null, reason: "\"id\" must be a string, a number or null" });
    }
    let params = obj.remove("params");
    if params.as_ref().is_some_and(|p| !(p.is_object() || p.is_array() || p.is_null())) {
        return Err(Invalid::Request {
            id: id.unwrap_or(Value::Null),
            reason: "\"params\" must be an object or an array",
        });
    }
    match (obj.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) => Ok(Incoming::Request { id, method, params }),
        (Some(Value::String(method)), None) => Ok(Incoming::Notification { method, params }),
        (Some(_), id) => Err(Invalid::Request { id: id.unwrap_or(Value::Null), reason: "\"method\" must be a string" }),
        (None, Some(id)) => {
            let result = match obj.remove("error") {
                Some(error) => Err((
                    error.get("code").and_then(Value::as_i64).unwrap_or(0),
                    error.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
                )),
                None => Ok(obj.remove("result").unwrap_or(Value::Null)),
            };
            Ok(Incoming::Response { id, result })
        }
        (None, None) => Err(Invalid::Request { id: Value::Null, reason: "neither a request nor a response" }),
    }
}
