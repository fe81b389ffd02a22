//! A plugin's tool as a keel `Tool`: checked as its own action, run by the plugin through `tool/call` on whatever
//! connection the plugin has when the call starts.

use std::sync::Weak;
use std::time::Duration;

use keel_protocol::Method;
use keel_protocol::plugin::{ToolCall, ToolCallParams, ToolCallResult, ToolDeclaration};
use serde_json::Value;

use super::process::Plugin;
use crate::permission::Access;
use crate::provider::BoxFuture;
use crate::rpc::PeerError;
use crate::tool::{Decoded, Tool, ToolContext, ToolError, ToolOutput};

/// A plugin tool may work as long as a tool does; an interrupt stops it sooner.
const CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// The permission action of every plugin tool; its resource is `plugin/tool`.
pub const ACTION: &str = "plugin";

pub struct PluginTool {
    declared: ToolDeclaration,
    plugin_name: String,
    plugin: Weak<Plugin>,
}

impl PluginTool {
    pub fn new(declared: ToolDeclaration, plugin_name: String, plugin: Weak<Plugin>) -> Self {
        Self { declared, plugin_name, plugin }
    }

    async fn call(&self, input: Value, ctx: ToolContext) -> Result<ToolOutput, ToolError> {
        let plugin = self.plugin.upgrade().ok_or_else(|| ToolError::Failed("its plugin was removed".into()))?;
        let Some(peer) = plugin.connection() else {
            return Err(ToolError::Failed(format!("plugin {} is not running", plugin.spec.name)));
        };
        let params = ToolCallParams {
            session_id: ctx.session_id.clone(),
            call_id: ctx.call_id.clone(),
            tool: self.declared.name.clone(),
            input,
        };
        let answer = peer.request_until(ToolCall::NAME, &params, CALL_TIMEOUT, ctx.cancel.cancelled()).await;
        if ctx.cancel.is_cancelled() {
            return Err(ToolError::Interrupted);
        }
        let answer = answer.map_err(|e| ToolError::Failed(failure(&plugin.spec.name, &e)))?;
        let result: ToolCallResult = serde_json::from_value(answer)
            .map_err(|e| ToolError::Failed(format!("plugin {} answered tool/call badly: {e}", plugin.spec.name)))?;
        if result.is_error {
            return Err(ToolError::Failed(result.output));
        }
        Ok(ToolOutput { output: result.output, truncated: false })
    }
}

/// A failed request to a plugin, in words.
pub fn failure(plugin: &str, e: &PeerError) -> String {
    match e {
        PeerError::Timeout(t) => format!("plugin {plugin} did not answer within {} ms", t.as_millis()),
        PeerError::Closed => format!("plugin {plugin} exited"),
        PeerError::Remote { message, .. } => format!("plugin {plugin} failed: {message}"),
        other => format!("plugin {plugin}: {other}"),
    }
}

impl Tool for PluginTool {
    fn name(&self) -> &str {
        &self.declared.name
    }

    fn description(&self) -> &str {
        &self.declared.description
    }

    fn input_schema(&self) -> Value {
        self.declared.input_schema.clone()
    }

    fn pages_itself(&self) -> bool {
        false
    }

    fn idempotent(&self) -> bool {
        false
    }

    fn decode(&self, input: Value) -> Decoded {
        Decoded::new(input)
    }

    fn access(&self, _: &Decoded, _: &ToolContext) -> Result<Vec<Access>, ToolError> {
        Ok(vec![Access { action: ACTION, resources: vec![format!("{}/{}", self.plugin_name, self.declared.name)] }])
    }

    fn start<'a>(&'a self, input: Decoded, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let input =
                input.take::<Value>().ok_or_else(|| ToolError::Failed("input decoded by another tool".into()))?;
            self.call(input, ctx).await
        })
    }
}
