//! Compaction: making a session's context fit its model again. First old tool outputs are pruned (the context shows
//! a placeholder; the log keeps them), and when that is not enough the older prefix of the transcript is summarised
//! by the model into a checkpoint, the recent tail kept verbatim. Runs in the session's drain, under its lease;
//! everything it decides is an event (`compaction.started`, then `compaction.completed` or `compaction.failed`), and
//! nothing is deleted.

use std::path::Path;
use std::sync::Arc;

use keel_protocol::catalogue::EventBody;
use keel_protocol::compaction::{
    CompactionCompletedData, CompactionFailedData, CompactionReason, CompactionStartedData,
};
use keel_protocol::session::Usage;
use keel_protocol::turn::{Part, ToolStatus};
use tokio_util::sync::CancellationToken;

use super::context::{self, Context};
use super::{Error, Services, event};
use crate::config::{CompactionSettings, Config};
use crate::provider::catalog::ModelSpec;
use crate::provider::registry::Resolved;
use crate::provider::{ChatMessage, ProviderError, Request, UserPart};
use crate::store::context::ContextRow;
use crate::store::transcript::{self, PartRow};
use crate::store::{PRUNED_OUTPUT, Store};

/// What a token is estimated as, in characters of text or JSON.
const CHARS_PER_TOKEN: u64 = 4;
/// Tool outputs in the text given to the summariser are cut to this many characters.
const SUMMARY_TOOL_OUTPUT: usize = 2_000;
/// The summary's own output limit.
const SUMMARY_OUTPUT_TOKENS: u64 = 4_096;

const SUMMARY_PROMPT: &str = "You write the working memory of a coding agent whose conversation grew too long for \
its context window. Summarise the conversation you are given so that the agent can go on with the work from your \
summary and the most recent messages alone. Answer with exactly these sections, as terse bullets, with exact file \
paths, commands, names and error messages:\n\n## Goal\n## Decisions\n## State of the work\n(done, in progress, \
blocked)\n## Files touched\n## Next step\n\nWhen a previous summary is given, merge it into yours: keep what still \
holds, newer facts win. Carry forward only requests that are still open. Do not mention the summary itself.";

#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error("nothing to compact: the latest message alone does not fit the model's context window")]
    NothingToCompact,
    #[error("the summary request failed: {0}")]
    Provider(#[from] ProviderError),
    #[error("the model returned an empty summary")]
    EmptySummary,
    #[error("interrupted")]
    Interrupted,
}

/// How a compaction ended; failures are recorded as `compaction.failed`, and the caller decides what they mean.
#[derive(Debug)]
pub enum Compacted {
    Done,
    Failed(CompactionError),
    Interrupted,
}

/// The token budgets of a model's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// A request estimated at this size or more is compacted first.
    pub usable: u64,
    /// The recent transcript kept verbatim (and whose tool outputs are never pruned).
    pub keep: u64,
}

impl Budget {
    /// `min(input limit − buffer, context − max(output reserve, buffer))`; the catalog declares no separate input
    /// limit, so the second term decides. The default buffer shrinks with small windows, where a fixed 20,000 would
    /// leave nothing.
    pub fn of(spec: &ModelSpec, settings: &CompactionSettings) -> Self {
        let context = spec.context_window;
        // The same output limit the request asks for, at most half the window so that small models stay usable.
        let output = spec.max_output_tokens.min(32_000).min(context / 2);
        let buffer = settings.buffer.unwrap_or_else(|| (context / 10).min(20_000));
        let usable = context.saturating_sub(output.max(buffer));
        let keep = settings.keep_tokens.unwrap_or_else(|| (usable / 4).min(8_000)).min(usable / 2);
        Self { usable, keep }
    }
}

pub fn settings(config: &Config) -> CompactionSettings {
    config.compaction.clone().unwrap_or_default()
}

pub fn chars_to_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(CHARS_PER_TOKEN)
}

/// The fixed part of every request: the system prompt and the tool definitions.
pub fn overhead_chars(request: &Request) -> usize {
    request.system.len()
        + request
            .tools
            .iter()
            .map(|t| t.name.len() + t.description.len() + t.input_schema.to_string().len())
            .sum::<usize>()
}

/// The size of the next request: the last measured context size plus an estimate of every part added since, or,
/// before any measurement, an estimate of the whole.
pub fn estimate(context: &Context, overhead: usize) -> u64 {
    let row = &context.row;
    let added: usize = context.parts.iter().filter(|p| p.seq > row.anchor_seq).map(|p| p.data.len()).sum();
    let all = context.parts.iter().map(|p| p.data.len()).sum::<usize>();
    size(row, added, all, overhead)
}

/// `all_chars` (the whole transcript after the checkpoint) counts only before any measurement.
fn size(row: &ContextRow, added_chars: usize, all_chars: usize, overhead: usize) -> u64 {
    if row.anchor_tokens > 0 {
        return row.anchor_tokens + chars_to_tokens(added_chars);
    }
    chars_to_tokens(overhead + row.summary.as_ref().map_or(0, String::len) + all_chars)
}

/// Whether the next request must be compacted first: its estimate reaches the usable window, and something was
/// added since the size was last measured (a context that a compaction just made cannot get smaller by another
/// one).
pub fn required(store: &Store, session_id: &str, overhead: usize, budget: Budget) -> crate::store::Result<bool> {
    if budget.usable == 0 {
        return Ok(false);
    }
    let measured = measure(store, session_id, overhead)?;
    Ok(measured.added_parts > 0 && measured.tokens >= budget.usable)
}

/// The estimated size of a session's next request.
pub struct Measured {
    pub tokens: u64,
    /// Parts recorded since the size was last measured.
    pub added_parts: u64,
}

/// Estimates the next request from the parts after the anchor (the whole context only before any measurement), so
/// that it costs the same at any length of the log.
pub fn measure(store: &Store, session_id: &str, overhead: usize) -> crate::store::Result<Measured> {
    store.query(|c| {
        let row = crate::store::context::get(c, session_id)?.unwrap_or_default();
        let (added_chars, added_parts) = transcript::size_after(c, session_id, row.anchor_seq)?;
        let all_chars = match row.anchor_tokens {
            0 => transcript::size_after(c, session_id, row.checkpoint_seq)?.0,
            _ => 0,
        };
        Ok(Measured { tokens: size(&row, added_chars, all_chars, overhead), added_parts })
    })
}

/// The request of the turn about to run, needed for its size and model.
pub struct Target<'a> {
    pub session_id: &'a str,
    pub cwd: &'a Path,
    pub resolved: &'a Resolved,
    /// Who writes the summary: `compaction.model`, or the session's own.
    pub summariser: &'a Resolved,
    /// A request built as the turn would build it (for its system prompt and tools).
    pub request: &'a Request,
}

/// Compacts the session's context; records the outcome.
pub async fn compact(
    services: &Arc<Services>,
    target: &Target<'_>,
    reason: CompactionReason,
    settings: &CompactionSettings,
    cancel: &CancellationToken,
) -> Result<Compacted, Error> {
    let compaction_id = format!("cmp_{}", uuid::Uuid::now_v7().simple());
    let session_id = target.session_id;
    services.append_events(
        session_id,
        vec![event(EventBody::CompactionStarted(CompactionStartedData {
            compaction_id: compaction_id.clone(),
            reason,
        }))?],
    )?;
    let context = Context::load(&services.store, session_id)?;
    let overhead = overhead_chars(target.request);
    let budget = Budget::of(&target.resolved.spec, settings);
    let tokens_before = estimate(&context, overhead);
    let plan = plan(&context.parts, budget);
    let saved = |from: usize| plan.pruned.iter().filter(|p| p.index >= from).map(|p| p.saved_tokens).sum::<u64>();
    let after_pruning = tokens_before.saturating_sub(saved(0));
    let pruned_calls: Vec<String> = plan.pruned.iter().map(|p| p.call_id.clone()).collect();
    let fail = |error: CompactionError| -> Result<Compacted, Error> {
        services.append_events(
            session_id,
            vec![event(EventBody::CompactionFailed(CompactionFailedData {
                compaction_id: compaction_id.clone(),
                error: error.to_string(),
            }))?],
        )?;
        Ok(Compacted::Failed(error))
    };
    // An automatic compaction stops at pruning when that leaves room for a few turns; an overflow (the estimate
    // was wrong) and a manual one (the user asked for a summary) always summarise when there is something to.
    let pruning_enough =
        reason == CompactionReason::Auto && !pruned_calls.is_empty() && after_pruning < budget.usable * 3 / 4;
    let outcome = match plan.split {
        _ if pruning_enough => Outcome {
            checkpoint_seq: context.row.checkpoint_seq,
            summary: None,
            tokens_after: after_pruning,
            usage: None,
        },
        // Asked for by a person, an empty compaction is an answer, not an error.
        None if pruned_calls.is_empty() && reason == CompactionReason::Manual => Outcome {
            checkpoint_seq: context.row.checkpoint_seq,
            summary: None,
            tokens_after: tokens_before,
            usage: None,
        },
        None if pruned_calls.is_empty() || reason == CompactionReason::Overflow => {
            return fail(CompactionError::NothingToCompact);
        }
        None => Outcome {
            checkpoint_seq: context.row.checkpoint_seq,
            summary: None,
            tokens_after: after_pruning,
            usage: None,
        },
        Some(split) => {
            let (prefix, tail) = context.parts.split_at(split);
            let text = transcript_text(context.row.summary.as_deref(), prefix, target.cwd, budget);
            let summary = match summarise_with_retries(services, target, &text, cancel).await {
                Ok(Some(summary)) => summary,
                Ok(None) => {
                    // Said, so that no client shows a compaction running forever; the next one starts afresh.
                    fail(CompactionError::Interrupted)?;
                    return Ok(Compacted::Interrupted);
                }
                Err(e) => return fail(e),
            };
            let tail_chars: usize = tail.iter().map(|p| p.data.len()).sum();
            let tokens_after = chars_to_tokens(overhead + summary.text.len() + tail_chars).saturating_sub(saved(split));
            // The tail is what comes after the checkpoint: the parts from its first part's event on.
            let checkpoint_seq = tail.first().map_or(context.row.checkpoint_seq, |p| p.seq.saturating_sub(1));
            Outcome { checkpoint_seq, summary: Some(summary.text), tokens_after, usage: Some(summary.usage) }
        }
    };
    services.append_events(
        session_id,
        vec![event(EventBody::CompactionCompleted(CompactionCompletedData {
            compaction_id,
            checkpoint_seq: outcome.checkpoint_seq,
            tokens_before,
            tokens_after: outcome.tokens_after,
            summary: outcome.summary,
            pruned_calls,
            usage: outcome.usage,
        }))?],
    )?;
    services.report_usage(session_id, &target.resolved.spec, settings)?;
    Ok(Compacted::Done)
}

struct Outcome {
    checkpoint_seq: u64,
    summary: Option<String>,
    tokens_after: u64,
    usage: Option<Usage>,
}

/// What a compaction would do to a context: the tool outputs to prune and where the verbatim tail starts (an index
/// into the parts), if there is an older prefix to summarise.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    pruned: Vec<Pruned>,
    split: Option<usize>,
}

#[derive(Debug, PartialEq)]
struct Pruned {
    /// The part's index in the context.
    index: usize,
    call_id: String,
    saved_tokens: u64,
}

fn plan(parts: &[PartRow], budget: Budget) -> Plan {
    let mut plan = Plan::default();
    // Newest first: what fits the kept budget is protected; completed tool outputs older than that are pruned.
    let mut recent: u64 = 0;
    for (index, part) in parts.iter().enumerate().rev() {
        recent += chars_to_tokens(part.data.len());
        if recent <= budget.keep {
            continue;
        }
        if let Some((call_id, output)) = prunable(part) {
            let saved_tokens = chars_to_tokens(output.saturating_sub(PRUNED_OUTPUT.len()));
            plan.pruned.push(Pruned { index, call_id, saved_tokens });
        }
    }
    plan.pruned.reverse();
    // The tail starts at a message boundary, so that a call and its result stay together: the newest message, and
    // the ones before it while they fit the kept budget, but never the first (there must be a prefix to summarise).
    let starts: Vec<usize> =
        (0..parts.len()).filter(|&i| i == 0 || parts[i].message_id != parts[i - 1].message_id).collect();
    let tokens = |range: &[PartRow]| range.iter().map(|p| chars_to_tokens(p.data.len())).sum::<u64>();
    if let [_, candidates @ .., newest] = starts.as_slice() {
        let mut split = *newest;
        let mut size = tokens(&parts[split..]);
        for &start in candidates.iter().rev() {
            let more = tokens(&parts[start..split]);
            if size + more > budget.keep {
                break;
            }
            size += more;
            split = start;
        }
        plan.split = Some(split);
    }
    plan
}

/// A completed tool part whose output is worth replacing: its call id and output size.
fn prunable(part: &PartRow) -> Option<(String, usize)> {
    if part.kind != "tool" {
        return None;
    }
    let Ok(Part::Tool { call_id, status: ToolStatus::Completed, output: Some(output), .. }) =
        serde_json::from_str(&part.data)
    else {
        return None;
    };
    (output.len() > PRUNED_OUTPUT.len() * 2).then_some((call_id, output.len()))
}

/// The prefix as plain text for the summariser: the previous summary, then every message, tool outputs cut short;
/// cut in the middle when it would not fit the model (the start holds the goal, the end the latest state).
fn transcript_text(previous: Option<&str>, prefix: &[PartRow], cwd: &Path, budget: Budget) -> String {
    let mut text = String::new();
    if let Some(previous) = previous {
        text.push_str(&format!("<previous-summary>\n{previous}\n</previous-summary>\n\n"));
    }
    for message in context::history(prefix, cwd) {
        match message {
            ChatMessage::User(parts) => {
                text.push_str("User:\n");
                for part in parts {
                    match part {
                        UserPart::Text(t) => text.push_str(&t),
                        UserPart::Image { mime, .. } => text.push_str(&format!("[image {mime}]")),
                    }
                    text.push('\n');
                }
            }
            ChatMessage::Assistant { text: said, tool_calls, .. } => {
                text.push_str("Assistant:\n");
                text.push_str(&said);
                text.push('\n');
                for call in tool_calls {
                    text.push_str(&format!("[called {} {}]\n", call.name, call.input));
                }
            }
            ChatMessage::ToolResult { tool, output, is_error, .. } => {
                let output = super::context::truncate(&output, SUMMARY_TOOL_OUTPUT);
                let label = if is_error { "failed" } else { "result" };
                text.push_str(&format!("[{tool} {label}]\n{output}\n"));
            }
        }
    }
    // Code tokenises denser than prose: three characters a token keeps the request inside the window.
    let max = usize::try_from(budget.usable.saturating_sub(SUMMARY_OUTPUT_TOKENS.min(budget.usable / 2)) * 3)
        .unwrap_or(usize::MAX);
    if text.len() <= max {
        return text;
    }
    let head = super::context::truncate(&text, max / 3).to_owned();
    let tail_len = max - head.len();
    let mut start = text.len() - tail_len;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("{head}\n[… older messages left out …]\n{}", &text[start..])
}

/// The summary, with the turns' retry policy for transient failures: a summary request has no effect of its own,
/// so it is sent again without a record. `None` when interrupted.
async fn summarise_with_retries(
    services: &Services,
    target: &Target<'_>,
    text: &str,
    cancel: &CancellationToken,
) -> Result<Option<Summary>, CompactionError> {
    let mut attempt: u32 = 0;
    loop {
        match summarise(target, text.to_owned(), cancel).await {
            Err(CompactionError::Provider(e)) if e.is_transient() && attempt < services.settings.max_retries => {
                attempt += 1;
                let delay = e
                    .retry_after()
                    .unwrap_or_else(|| services.settings.retry_base.saturating_mul(1 << (attempt - 1).min(10)));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Ok(None),
                    _ = services.shutdown.cancelled() => return Ok(None),
                }
            }
            other => return other,
        }
    }
}

/// Asks the model for the summary; `None` when interrupted.
async fn summarise(
    target: &Target<'_>,
    text: String,
    cancel: &CancellationToken,
) -> Result<Option<Summary>, CompactionError> {
    let spec = &target.summariser.spec;
    let request = Request {
        model: spec.model().to_owned(),
        system: SUMMARY_PROMPT.to_owned(),
        messages: vec![ChatMessage::User(vec![UserPart::Text(format!("<conversation>\n{text}\n</conversation>"))])],
        tools: Vec::new(),
        max_output_tokens: spec.max_output_tokens.min(SUMMARY_OUTPUT_TOKENS),
        reasoning_effort: None,
        temperature: None,
        headers: Vec::new(),
        session_id: target.session_id.to_owned(),
    };
    let Some(answer) = crate::provider::complete(&*target.summariser.provider, &request, cancel).await? else {
        return Ok(None);
    };
    let text = answer.text.trim().to_owned();
    if text.is_empty() {
        return Err(CompactionError::EmptySummary);
    }
    Ok(Some(Summary { text, usage: super::usage::priced(spec, &answer.usage) }))
}

/// A summary with what its request used.
struct Summary {
    text: String,
    usage: Usage,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(context_window: u64, max_output_tokens: u64) -> ModelSpec {
        ModelSpec { context_window, max_output_tokens, ..ModelSpec::unknown("p/m") }
    }

    #[test]
    fn the_usable_window_leaves_room_for_the_output_and_a_buffer() {
        let defaults = CompactionSettings::default();
        assert_eq!(Budget::of(&spec(100_000, 1_000), &defaults), Budget { usable: 90_000, keep: 8_000 });
        assert_eq!(Budget::of(&spec(200_000, 64_000), &defaults), Budget { usable: 168_000, keep: 8_000 });
        assert_eq!(Budget::of(&spec(2_000, 200), &defaults), Budget { usable: 1_800, keep: 450 });
        // An output limit as large as the window does not leave a window of nothing.
        assert_eq!(Budget::of(&spec(8_000, 8_000), &defaults), Budget { usable: 4_000, keep: 1_000 });
        let set = CompactionSettings { buffer: Some(3_000), keep_tokens: Some(5_000), ..Default::default() };
        assert_eq!(Budget::of(&spec(10_000, 1_000), &set), Budget { usable: 7_000, keep: 3_500 });
    }

    fn part(seq: u64, message: &str, role: &str, data: serde_json::Value) -> PartRow {
        let kind = data["type"].as_str().unwrap_or_default().to_owned();
        PartRow { seq, idx: 0, message_id: message.into(), role: role.into(), kind, data: data.to_string() }
    }

    fn text(seq: u64, message: &str, role: &str, chars: usize) -> PartRow {
        part(seq, message, role, json!({ "type": "text", "id": format!("p{seq}"), "text": "t".repeat(chars) }))
    }

    fn tool(seq: u64, message: &str, call: &str, chars: usize) -> PartRow {
        let output = "o".repeat(chars);
        let data = json!({ "type": "tool", "callId": call, "tool": "read", "input": {}, "status": "completed",
                           "output": output });
        part(seq, message, "assistant", data)
    }

    #[test]
    fn old_outputs_are_pruned_and_the_tail_starts_at_a_message() {
        let budget = Budget { usable: 10_000, keep: 1_000 };
        let parts = vec![
            text(1, "m1", "user", 100),
            tool(2, "m2", "old", 8_000),
            text(4, "m3", "user", 100),
            tool(5, "m4", "recent", 2_000),
            text(6, "m4", "assistant", 100),
        ];
        let plan = plan(&parts, budget);
        assert_eq!(plan.pruned.iter().map(|p| p.call_id.as_str()).collect::<Vec<_>>(), ["old"]);
        assert_eq!(plan.pruned[0].index, 1);
        // m4 (about 600 tokens) and m3 fit the kept 1,000; m2 does not.
        assert_eq!(plan.split, Some(2));
    }

    #[test]
    fn the_newest_message_stays_even_when_it_is_larger_than_the_kept_budget() {
        let budget = Budget { usable: 10_000, keep: 100 };
        let parts = vec![text(1, "m1", "user", 100), text(2, "m2", "assistant", 4_000)];
        assert_eq!(plan(&parts, budget).split, Some(1));
        // A single message has no older prefix to summarise.
        assert_eq!(plan(&parts[..1], budget).split, None);
        assert_eq!(plan(&[], budget), Plan::default());
    }

    #[test]
    fn the_estimate_starts_from_the_last_measurement() {
        let parts = vec![text(3, "m1", "user", 400), text(9, "m2", "assistant", 400)];
        let measured = ContextRow { anchor_tokens: 1_000, anchor_seq: 5, ..Default::default() };
        let context = Context { row: measured, parts: parts.clone() };
        let added = chars_to_tokens(parts[1].data.len());
        assert_eq!(estimate(&context, 4_000), 1_000 + added);
        let unmeasured = Context { row: ContextRow::default(), parts };
        let all: usize = unmeasured.parts.iter().map(|p| p.data.len()).sum();
        assert_eq!(estimate(&unmeasured, 4_000), chars_to_tokens(4_000 + all));
    }
}
