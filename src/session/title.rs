//! Session titles. The first prompt of an untitled session names it: in a few words from the small model when one
//! is configured (`smallModel`), from the prompt's own first words otherwise. A title is
//! recorded only while the session still has the default one, decided inside the append, so a title a person set
//! is never overwritten.

use std::sync::Arc;
use std::time::Duration;

use keel_protocol::catalogue::EventBody;
use keel_protocol::event::SessionUpdatedData;
use keel_protocol::input::ContentPart;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Services;
use super::service::DEFAULT_TITLE;
use crate::provider::{ChatMessage, Request, UserPart};
use crate::store::{NewEvent, SessionRow};

const TITLE_PROMPT: &str = "You name conversations between a user and a coding agent. Reply with a title of at \
most six words for the conversation that starts with the user's message below: plain words, no quotes, no \
trailing punctuation, nothing else.";
const MAX_CHARS: usize = 60;
/// What the small model may take; past it the prompt's own words name the session.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A title being written by the model; the activity waits for it before it closes, so the title is part of it.
pub struct Titling {
    task: JoinHandle<()>,
}

impl Titling {
    /// Waits for the title unless the activity was interrupted or the engine is stopping, which abandons it (the
    /// next prompt tries again).
    pub async fn finish(self, cancel: &CancellationToken, shutdown: &CancellationToken) {
        let task = self.task;
        tokio::pin!(task);
        tokio::select! {
            _ = &mut task => {}
            _ = cancel.cancelled() => task.abort(),
            _ = shutdown.cancelled() => task.abort(),
        }
    }
}

/// How an untitled session gets its title from this activity's prompt.
pub enum Naming {
    /// From the prompt's own words: recorded with the activity's opening events, in their transaction.
    Now(String),
    /// By the small model: a task started once the activity is open.
    ByModel { text: String, resolved: crate::provider::registry::Resolved },
}

/// Whether and how the session is to be named after `prompt`.
pub fn naming(services: &Services, session: &SessionRow, prompt: &[ContentPart]) -> Option<Naming> {
    if session.title != DEFAULT_TITLE {
        return None;
    }
    let text = prompt_text(prompt);
    if text.is_empty() {
        return None;
    }
    let config = services.config(Some(&session.cwd));
    match config.small_model.as_deref().and_then(|m| services.providers.resolve(&config, m).ok()) {
        Some(resolved) => Some(Naming::ByModel { text, resolved }),
        None => Some(Naming::Now(from_words(&text))),
    }
}

/// The `session.updated` that names the session, if it still has the default title (read on `tx`).
pub fn titled(
    tx: &dyn crate::store::db::Db,
    session_id: &str,
    title: String,
) -> crate::store::Result<Option<NewEvent>> {
    let current = crate::store::sessions::title(tx, session_id)?;
    if current.as_deref() != Some(DEFAULT_TITLE) {
        return Ok(None);
    }
    let data = SessionUpdatedData { title: Some(title), ..Default::default() };
    Ok(Some(NewEvent::new(EventBody::SessionUpdated(data))?))
}

/// Asks the small model for the title; the returned `Titling` is awaited before the activity closes.
pub fn ask(
    services: &Arc<Services>,
    session_id: &str,
    text: String,
    resolved: crate::provider::registry::Resolved,
) -> Titling {
    let (services, session_id) = (Arc::clone(services), session_id.to_owned());
    let task = tokio::spawn(async move {
        let request = Request {
            model: resolved.spec.model().to_owned(),
            system: TITLE_PROMPT.to_owned(),
            messages: vec![ChatMessage::User(vec![UserPart::Text(
                crate::session::context::truncate(&text, 4_000).to_owned(),
            )])],
            tools: Vec::new(),
            max_output_tokens: 32,
            reasoning_effort: None,
            temperature: None,
            headers: Vec::new(),
            session_id: session_id.clone(),
        };
        let never = CancellationToken::new();
        let answer =
            tokio::time::timeout(TIMEOUT, crate::provider::complete(&*resolved.provider, &request, &never)).await;
        let title = match answer {
            Ok(Ok(Some(answer))) => cleaned(&answer.text),
            Ok(Err(e)) => {
                tracing::debug!(session = %session_id, "the small model wrote no title: {e}");
                None
            }
            _ => None,
        };
        let title = title.unwrap_or_else(|| from_words(&text));
        let decided =
            services.append_decided(&session_id, |tx| Ok(titled(tx, &session_id, title)?.into_iter().collect()));
        if let Err(e) = decided {
            tracing::debug!(session = %session_id, "no title recorded: {e}");
        }
    });
    Titling { task }
}

fn prompt_text(prompt: &[ContentPart]) -> String {
    let texts: Vec<&str> = prompt
        .iter()
        .filter_map(|p| match p {
            ContentPart::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    texts.join("\n").trim().to_owned()
}

/// The model's answer as a title: its first line, without quotes, a `Title:` label or a closing full stop.
fn cleaned(answer: &str) -> Option<String> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line.strip_prefix("Title:").or_else(|| line.strip_prefix("title:")).unwrap_or(line);
    let line = line.trim().trim_matches(|c| matches!(c, '"' | '\'' | '`' | '*' | '#')).trim();
    let line = line.trim_end_matches('.').trim();
    (!line.is_empty()).then(|| shortened(line))
}

/// The prompt's first line as a title, cut at a word boundary.
fn from_words(prompt: &str) -> String {
    let line = prompt.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or(prompt);
    shortened(line)
}

fn shortened(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= MAX_CHARS {
        return text;
    }
    // One character more, so that a word ending right at the limit is kept.
    let cut: String = text.chars().take(MAX_CHARS + 1).collect();
    let at_word = match cut.rfind(' ').filter(|&i| i > MAX_CHARS / 2) {
        Some(i) => &cut[..i],
        None => &cut[..cut.char_indices().nth(MAX_CHARS).map_or(cut.len(), |(i, _)| i)],
    };
    format!("{}…", at_word.trim_end_matches([',', ';', ':', '.']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_cleaned_and_cut() {
        let check =
            |answer: &str, expected: Option<&str>| assert_eq!(cleaned(answer).as_deref(), expected, "{answer:?}");
        check("Fix the login bug", Some("Fix the login bug"));
        check("  \"Fix the login bug.\"\n", Some("Fix the login bug"));
        check("Title: Refactor the parser", Some("Refactor the parser"));
        check("**Add tests**", Some("Add tests"));
        check("\n\n", None);
        check("\"\"", None);
        assert_eq!(from_words("\n  Explain   this repository\nand more"), "Explain this repository");
        let long = "Please read every file in the src folder and explain how the engine schedules its sessions";
        assert_eq!(from_words(long), "Please read every file in the src folder and explain how the…");
    }
}
