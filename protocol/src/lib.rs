//! keel's wire protocol: every JSON-RPC method, notification and durable event payload, as plain serde types.
//!
//! This crate depends on nothing of keel's. The engine converts its own types into these at its `api` edge.
//! Everything is camelCase on the wire; discriminators are snake_case or dotted strings.

pub mod agent;
pub mod approval;
pub mod auth;
pub mod catalogue;
pub mod compaction;
pub mod config;
pub mod error;
pub mod event;
pub mod initialize;
pub mod input;
pub mod job;
pub mod mcp;
pub mod model;
pub mod plugin;
pub mod recovery;
pub mod schema;
pub mod session;
pub mod shell;
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
    /// The params field whose value orders requests: one connection's requests naming the same value run in
    /// arrival order, all others concurrently. `None`: never waits for another request.
    const ORDERED_BY: Option<&'static str> = None;
}

/// A notification (either direction): its name and params.
pub trait Notification {
    const NAME: &'static str;
    type Params: DeserializeOwned + Serialize + JsonSchema;
}

/// Declares a unit type per method so that handlers, clients and the schema share one name.
macro_rules! method {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $params:ty, $result:ty $(, ordered_by = $field:literal)?) => {
        $(#[$doc])*
        pub enum $ty {}
        impl $crate::Method for $ty {
            const NAME: &'static str = $name;
            type Params = $params;
            type Result = $result;
            $(const ORDERED_BY: Option<&'static str> = Some($field);)?
        }
    };
}

/// Every client→server method, declared once: the engine's method table and the schema both expand this list
/// through a callback macro, so a method cannot be in one and not the other.
#[macro_export]
macro_rules! client_methods {
    ($callback:ident) => {
        $callback! {
            $crate::initialize::Initialize,
            $crate::initialize::Shutdown,
            $crate::session::SessionCreate,
            $crate::session::SessionList,
            $crate::session::SessionGet,
            $crate::session::SessionUpdate,
            $crate::session::SessionFork,
            $crate::session::SessionDelete,
            $crate::event::SessionSubscribe,
            $crate::event::SessionUnsubscribe,
            $crate::event::SessionEvents,
            $crate::turn::SessionMessages,
            $crate::input::SessionPrompt,
            $crate::input::SessionResume,
            $crate::input::SessionInterrupt,
            $crate::input::SessionQueueRemove,
            $crate::shell::SessionShell,
            $crate::model::ModelList,
            $crate::model::ProviderList,
            $crate::auth::AuthSet,
            $crate::auth::AuthList,
            $crate::auth::AuthRemove,
            $crate::config::ConfigGet,
            $crate::config::ConfigSet,
            $crate::config::ConfigUnset,
            $crate::config::ToolList,
            $crate::approval::ApprovalRespond,
            $crate::recovery::RecoveryDecide,
            $crate::mcp::McpList,
            $crate::mcp::McpRestart,
            $crate::compaction::SessionCompact,
            $crate::agent::AgentList,
            $crate::agent::SkillList,
            $crate::agent::CommandList,
            $crate::agent::SessionCommand,
            $crate::job::JobList,
            $crate::job::JobOutput,
            $crate::job::JobCancel,
            $crate::plugin::PluginRegister,
            $crate::plugin::ToolRegister,
            $crate::plugin::PluginList,
            $crate::plugin::ProviderRegister,
            $crate::plugin::ProviderDeltas,
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
