//! Thin adapters: protocol params → engine calls → protocol results. Protocol types stop here.

mod approval;
mod catalog;
mod error;
mod input;
mod lifecycle;
pub(crate) mod params;
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
use crate::rpc::Call;

/// The method table: every client→server method of the protocol, bound to its handler.
pub fn methods(engine: Arc<Engine>) -> Result<RpcModule<Engine>, RegisterMethodError> {
    use keel_protocol::{
        approval as apr, auth, config, event as ev, initialize as init, input as inp, model, session as s, turn,
    };
    let mut table = Table(RpcModule::from_arc(engine));
    table.add::<init::Initialize, _, _>(lifecycle::initialize)?;
    table.add::<init::Shutdown, _, _>(lifecycle::shutdown)?;
    table.add::<s::SessionCreate, _, _>(session::create)?;
    table.add::<s::SessionList, _, _>(session::list)?;
    table.add::<s::SessionGet, _, _>(session::get)?;
    table.add::<s::SessionUpdate, _, _>(session::update)?;
    table.add::<s::SessionFork, _, _>(session::fork)?;
    table.add::<s::SessionDelete, _, _>(session::delete)?;
    table.add::<ev::SessionSubscribe, _, _>(subscribe::subscribe)?;
    table.add::<ev::SessionUnsubscribe, _, _>(subscribe::unsubscribe)?;
    table.add::<ev::SessionEvents, _, _>(subscribe::events)?;
    table.add::<turn::SessionMessages, _, _>(session::messages)?;
    table.add::<inp::SessionPrompt, _, _>(input::prompt)?;
    table.add::<inp::SessionResume, _, _>(input::resume)?;
    table.add::<inp::SessionInterrupt, _, _>(input::interrupt)?;
    table.add::<inp::SessionQueueRemove, _, _>(input::queue_remove)?;
    table.add::<model::ModelList, _, _>(catalog::models)?;
    table.add::<model::ProviderList, _, _>(catalog::providers)?;
    table.add::<auth::AuthSet, _, _>(catalog::auth_set)?;
    table.add::<auth::AuthList, _, _>(catalog::auth_list)?;
    table.add::<auth::AuthRemove, _, _>(catalog::auth_remove)?;
    table.add::<config::ConfigGet, _, _>(catalog::config)?;
    table.add::<config::ToolList, _, _>(catalog::tools)?;
    table.add::<apr::ApprovalRespond, _, _>(approval::respond)?;
    Ok(table.0)
}

struct Table(RpcModule<Engine>);

impl Table {
    /// Registers a typed handler: params are parsed as one object (LSP style), errors mapped in `error.rs`.
    fn add<M, F, Fut>(&mut self, handler: F) -> Result<(), RegisterMethodError>
    where
        M: Method + 'static,
        F: Fn(Arc<Engine>, M::Params, Call) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Result, ApiError>> + Send + 'static,
    {
        self.0.register_async_method(M::NAME, move |raw, engine, extensions| {
            let handler = handler.clone();
            async move {
                let call =
                    extensions.get::<Call>().cloned().ok_or_else(|| ApiError::Internal("no call context".into()));
                let params = params::parse::<M::Params>(raw.as_str());
                let result = match (call, params) {
                    (Ok(call), Ok(params)) => handler(engine, params, call).await,
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
                result.map_err(ErrorObjectOwned::from)
            }
        })?;
        Ok(())
    }
}
