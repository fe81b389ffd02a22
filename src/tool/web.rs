//! `webfetch`: GET a URL with a timeout and a size cap enforced while the body streams.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ToolContext, ToolError, ToolOutput, TypedTool};
use crate::permission::Access;
use crate::provider::BoxFuture;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_BODY: usize = 5 * 1024 * 1024;

pub struct WebFetch {
    client: reqwest::Client,
}

impl WebFetch {
    pub fn new() -> Self {
        let client =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::limited(5)).build().unwrap_or_default();
        Self { client }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FetchInput {
    /// An http or https URL.
    url: String,
    /// `text` (default: HTML reduced to its text) or `html` (the raw body).
    #[serde(default)]
    format: Option<String>,
    /// Seconds (default 30, at most 120).
    #[serde(default)]
    timeout: Option<u64>,
}

impl TypedTool for WebFetch {
    fn idempotent(&self) -> bool {
        true
    }

    type Input = FetchInput;

    fn name(&self) -> &'static str {
        "webfetch"
    }

    fn description(&self) -> &'static str {
        "Fetch a web page or file over http(s). Bodies over 5 MiB are refused; HTML is reduced to text unless \
         format is html."
    }

    fn access(&self, input: Result<&Self::Input, &ToolError>, _: &ToolContext) -> Result<Vec<Access>, ToolError> {
        let input = input.map_err(Clone::clone)?;
        Ok(vec![Access { action: "webfetch", resources: vec![input.url.clone()] }])
    }

    fn execute<'a>(&'a self, input: Self::Input, ctx: ToolContext) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            if !(input.url.starts_with("http://") || input.url.starts_with("https://")) {
                return Err(ToolError::InvalidInput {
                    tool: "webfetch".into(),
                    message: "the URL must be http or https".into(),
                });
            }
            let timeout = input.timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs).min(MAX_TIMEOUT);
            let fetched = tokio::select! {
                fetched = tokio::time::timeout(timeout, self.fetch(&input.url)) => fetched,
                _ = ctx.cancel.cancelled() => return Err(ToolError::Interrupted),
            };
            match fetched {
                Err(_) => Err(ToolError::Failed(format!("timed out after {} s", timeout.as_secs()))),
                Ok(Err(e)) => Err(e),
                Ok(Ok((body, html))) => {
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let output =
                        if html && input.format.as_deref() != Some("html") { html_to_text(&text) } else { text };
                    Ok(ToolOutput { output, truncated: false })
                }
            }
        })
    }
}

impl WebFetch {
    async fn fetch(&self, url: &str) -> Result<(Vec<u8>, bool), ToolError> {
        let mut response = self.client.get(url).send().await.map_err(|e| ToolError::Failed(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ToolError::Failed(format!("{url} answered {status}")));
        }
        if response.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(ToolError::Failed(format!("the body is larger than {} MiB", MAX_BODY / 1024 / 1024)));
        }
        let html = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("html"));
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| ToolError::Failed(e.to_string()))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ToolError::Failed(format!("the body is larger than {} MiB", MAX_BODY / 1024 / 1024)));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, html))
    }
}

/// Drops tags, scripts and styles, decodes the common entities and collapses blank runs.
fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let lower: String = tail.chars().take(8).collect::<String>().to_ascii_lowercase();
        let skip_to = if lower.starts_with("<script") {
            tail.to_ascii_lowercase().find("</script>").map(|i| i + 9)
        } else if lower.starts_with("<style") {
            tail.to_ascii_lowercase().find("</style>").map(|i| i + 8)
        } else {
            tail.find('>').map(|i| i + 1)
        };
        let Some(skip) = skip_to else {
            rest = "";
            break;
        };
        if ["<p", "<br", "<div", "<li", "<h", "<tr"].iter().any(|t| lower.starts_with(t)) {
            out.push('\n');
        }
        rest = &tail[skip..];
    }
    out.push_str(rest);
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let mut text = String::new();
    let mut blank = 0;
    for line in decoded.lines().map(str::trim) {
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        text.push_str(line);
        text.push('\n');
    }
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_becomes_text() {
        let html = "<html><head><style>p{}</style><script>var x = '<p>';</script></head><body><h1>Title</h1><p>One &amp; two</p></body></html>";
        assert_eq!(super::html_to_text(html), "Title\nOne & two");
    }
}
