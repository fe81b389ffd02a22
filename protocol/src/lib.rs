//! keel's wire protocol: every JSON-RPC method, notification and durable event payload, as plain serde types.
//!
//! This crate depends on nothing of keel's. The engine converts its own types into these at its `api` edge.
//! Everything is camelCase on the wire; discriminators are snake_case or dotted strings.

pub mod approval;
pub mod auth;
pub mod catalogue;
pub mod config;
pub mod error;
pub mod event;
pub mod initialize;
pub mod input;
pub mod model;
pub mod schema;
pub mod session;
pub mod turn;

use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};

/// The protocol version spoken by this crate (`initialize.protocolVersion`).
pub const PROTOCOL_VERSION: u32 = 1;

/// A client→server request: its name and the types of its params and result.
pub trait Method {
    const NAME: &'static str;
    type Params: DeserializeOwned + Serialize + JsonSchema + Send;
    type Result: DeserializeOwned + Serialize + JsonSchema + Clone + Send;
}

/// A notification (either direction): its name and params.
pub trait Notification {
    const NAME: &'static str;
    type Params: DeserializeOwned + Serialize + JsonSchema;
}

/// Declares a unit type per method so that handlers, clients and the schema share one name.
macro_rules! method {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $params:ty, $result:ty) => {
        $(#[$doc])*
        pub enum $ty {}
        impl $crate::Method for $ty {
            const NAME: &'static str = $name;
            type Params = $params;
            type Result = $result;
        }
    };
}

macro_rules! notification {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $params:ty) => {
        $(#[$doc])*
        pub enum $ty {}
        impl $crate::Notification for $ty {
            const NAME: &'static str = $name;
            type Params = $params;
        }
    };
}

pub(crate) use method;
pub(crate) use notification;

/// The wire name of a unit enum variant (`waiting_approval`), for plain-text output.
pub fn wire_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// `{}` on the wire: the result of calls that only acknowledge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, JsonSchema)]

pub struct Empty {}
