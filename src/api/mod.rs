//! Thin adapters: protocol params → engine calls → protocol results. Protocol types stop here.

pub(crate) mod agent;
mod approval;
mod catalog;
mod client;
mod config;
mod error;
mod input;
mod job;
mod lifecycle;
pub(crate) mod params;
mod plugin;
mod session;
mod subscribe;

use std::sync::Arc;

use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;
use jsonrpsee::types::ErrorObjectOwned;
use keel_protocol::Method;

pub use error::ApiError;
pub use subscribe::wire as wire_event;

/// An event as one line of JSON in its wire shape (`keel run --format json`, `keel sessions events`).
pub fn event_line(e: &crate::store::Event) -> String {
    serde_json::to_string(&wire_event(e)).unwrap_or_default()
}

use crate::engine::Engine;
use crate::rpc::{Call, RequestOrder};

/// Each client→server method's handler. The method list is the protocol's own (`client_methods!`), so a method
/// declared there without a handler here does not compile.
trait Handler: Method {
    fn handle(
        engine: Arc<Engine>,
        params: Self::Params,
        call: Call,
    ) -> impl Future<Output = Result<Self::Result, ApiError>> + Send + 'static;
}

macro_rules! handlers {
    ($($method:ty => $handler:path),* $(,)?) => {
        $(impl Handler for $method {
            fn handle(
                engine: Arc<Engine>,
                params: Self::Params,
                call: Call,
            ) -> impl Future<Output = Result<Self::Result, ApiError>> + Send + 'static {
                $handler(engine, params, call)
            }
        })*
    };
}

mod bound {
    use keel_protocol::{
        approval as apr, auth, config, event as ev, initialize as init, input as inp, mcp, model, session as s, turn,
    };

    use super::*;

    handlers! {
        init::Initialize => lifecycle::initialize,
        init::Shutdown => lifecycle::shutdown,
        s::SessionCreate => session::create,
        s::SessionList => session::list,
        s::SessionGet => session::get,
        s::SessionUpdate => session::update,
        s::SessionFork => session::fork,
        s::SessionDelete => session::delete,
        ev::SessionSubscribe => subscribe::subscribe,
        ev::SessionUnsubscribe => subscribe::unsubscribe,
        ev::SessionEvents => subscribe::events,
        turn::SessionMessages => session::messages,
        inp::SessionPrompt => input::prompt,
        inp::SessionResume => input::resume,
        inp::SessionInterrupt => input::interrupt,
        inp::SessionQueueRemove => input::queue_remove,
        keel_protocol::shell::SessionShell => input::shell,
        model::ModelList => catalog::models,
        model::ProviderList => catalog::providers,
        auth::AuthSet => catalog::auth_set,
        auth::AuthList => catalog::auth_list,
        auth::AuthRemove => catalog::auth_remove,
        config::ConfigGet => catalog::config,
        config::ConfigSet => super::config::set,
        config::ConfigUnset => super::config::unset,
        config::ToolList => catalog::tools,
        apr::ApprovalRespond => approval::respond,
        keel_protocol::recovery::RecoveryDecide => input::decide,
        mcp::McpList => catalog::mcp_list,
        mcp::McpRestart => catalog::mcp_restart,
        keel_protocol::compaction::SessionCompact => input::compact,
        keel_protocol::agent::AgentList => agent::list,
        keel_protocol::agent::SkillList => agent::skills,
        keel_protocol::agent::CommandList => agent::commands,
        keel_protocol::agent::SessionCommand => agent::run,
        keel_protocol::job::JobList => job::list,
        keel_protocol::job::JobOutput => job::output,
        keel_protocol::job::JobCancel => job::cancel,
        keel_protocol::plugin::PluginRegister => plugin::register,
        keel_protocol::plugin::ToolRegister => plugin::register_tools,
        keel_protocol::plugin::PluginList => plugin::list,
        keel_protocol::plugin::ProviderRegister => plugin::register_provider,
        keel_protocol::plugin::ProviderDeltas => plugin::delta,
    }
}

/// Starts the plugins of the config for `cwd` on a server of their own: plugins speak keel's protocol whatever the
/// engine's clients speak (ACP, or none for `keel run`). They are served as long as the caller holds the server.
pub fn start_plugins(
    engine: &Arc<Engine>,
    cwd: &std::path::Path,
) -> Result<Arc<crate::rpc::Server>, RegisterMethodError> {
    let server = Arc::new(crate::rpc::Server::new(methods(Arc::clone(engine))?, None).with_ordering(ordering()));
    engine.start_plugins(&server, cwd);
    Ok(server)
}

/// The method table: every client→server method of the protocol, bound to its handler.
pub fn methods(engine: Arc<Engine>) -> Result<RpcModule<Engine>, RegisterMethodError> {
    let mut table = Table(RpcModule::from_arc(engine));
    macro_rules! register {
        ($($method:ty),* $(,)?) => {
            $(table.add::<$method>()?;)*
        };
    }
    keel_protocol::client_methods!(register);
    Ok(table.0)
}

/// Which requests wait for which: each method's ordering field, as the protocol declares it.
pub fn ordering() -> RequestOrder {
    let mut ordering = RequestOrder::default();
    macro_rules! declare {
        ($($method:ty),* $(,)?) => {
            $(if let Some(field) = <$method as Method>::ORDERED_BY {
                ordering.insert(<$method as Method>::NAME, field);
            })*
        };
    }
    keel_protocol::client_methods!(declare);
    ordering
}

struct Table(RpcModule<Engine>);

impl Table {
    /// Registers a typed handler: params are parsed as one object (LSP style), errors mapped in `error.rs`.
    fn add<M: Handler + 'static>(&mut self) -> Result<(), RegisterMethodError> {
        self.0.register_async_method(M::NAME, move |raw, engine, extensions| async move {
            let call = extensions.get::<Call>().cloned().ok_or_else(|| ApiError::Internal("no call context".into()));
            let params = params::parse::<M::Params>(raw.as_str());
            let result = match (call, params) {
                (Ok(call), Ok(params)) => M::handle(engine, params, call).await,
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            result.map_err(ErrorObjectOwned::from)
        })?;
        Ok(())
    }
}
