//! MCP servers' prompts as slash commands: `server:prompt`, its words given to the prompt's arguments in order (the
//! last one takes the rest), its messages' text sent as the user's prompt.

use rmcp::model::{GetPromptRequestParams, PromptMessageContent, ResourceContents};

use super::McpError;
use super::server::Server;

/// A prompt a server offers, as a command.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptCommand {
    /// `server:prompt`.
    pub name: String,
    pub server: String,
    pub prompt: String,
    pub description: String,
    /// Its arguments' names, in order.
    pub arguments: Vec<String>,
}

pub fn commands(server: &Server) -> Vec<PromptCommand> {
    server
        .snapshot()
        .prompts
        .into_iter()
        .map(|p| PromptCommand {
            name: format!("{}:{}", server.spec.name, p.name),
            server: server.spec.name.clone(),
            description: p.description.or(p.title).unwrap_or_else(|| format!("the MCP prompt {}", p.name)),
            arguments: p.arguments.unwrap_or_default().into_iter().map(|a| a.name).collect(),
            prompt: p.name,
        })
        .collect()
}

/// The text of `prompt` on `server` with `arguments` (the words the user typed after the command).
pub async fn text(server: &Server, prompt: &str, arguments: &str) -> Result<String, McpError> {
    let failed = |message: String| McpError::Prompt(format!("{}:{prompt}: {message}", server.spec.name));
    let declared = server.snapshot().prompts.into_iter().find(|p| p.name == prompt);
    let declared = declared.ok_or_else(|| failed("no such prompt".into()))?;
    let names = declared.arguments.unwrap_or_default();
    let mut words = arguments.split_whitespace().collect::<Vec<_>>().into_iter();
    let mut given = serde_json::Map::new();
    for (i, argument) in names.iter().enumerate() {
        let value = if i + 1 == names.len() {
            words.by_ref().collect::<Vec<_>>().join(" ")
        } else {
            words.next().unwrap_or_default().to_owned()
        };
        if value.is_empty() {
            if argument.required == Some(true) {
                return Err(failed(format!("needs its argument {:?}", argument.name)));
            }
            continue;
        }
        given.insert(argument.name.clone(), serde_json::Value::String(value));
    }
    let peer = server.snapshot().peer.ok_or_else(|| failed("the server is not running".into()))?;
    let params = GetPromptRequestParams { meta: None, name: prompt.to_owned(), arguments: Some(given) };
    let result = tokio::time::timeout(server.spec.call_timeout, peer.get_prompt(params))
        .await
        .map_err(|_| failed(format!("no answer within {} ms", server.spec.call_timeout.as_millis())))?
        .map_err(|e| failed(e.to_string()))?;
    let parts: Vec<String> = result
        .messages
        .into_iter()
        .filter_map(|m| match m.content {
            PromptMessageContent::Text { text } => Some(text),
            PromptMessageContent::Resource { resource } => match &resource.resource {
                ResourceContents::TextResourceContents { text, .. } => Some(text.clone()),
                ResourceContents::BlobResourceContents { .. } => None,
            },
            PromptMessageContent::Image { .. } | PromptMessageContent::ResourceLink { .. } => None,
        })
        .collect();
    Ok(parts.join("\n\n"))
}
