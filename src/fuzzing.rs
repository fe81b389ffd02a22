//! Entry points for the fuzz targets in `fuzz/` and for `tests/fuzz_corpus.rs`, which replays every corpus entry
//! so that CI guards what fuzzing found without fuzzing itself. Each takes arbitrary bytes and must return
//! without panicking, whatever they are.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use keel_protocol::{approval, event, initialize, input, session, turn};

/// A target: any bytes in, no panic out.
pub type Target = fn(&[u8]);

/// The targets by name, as the corpus folders are named.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame", frame),
    ("params", params),
    ("sse_chat", sse_chat),
    ("sse_responses", sse_responses),
    ("sse_anthropic", sse_anthropic),
    ("patch", patch),
    ("jsonc", jsonc),
    ("shell", shell),
];

/// Runs a future that never waits: the readers here read from memory.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// The frame decoder (both framings, detected from the bytes, with a small limit so that oversized paths run)
/// and the message classifier on every frame it yields.
pub fn frame(data: &[u8]) {
    for (max, strict) in [(crate::rpc::framing::MAX_FRAME, false), (64, false), (64, true)] {
        let mut reader = if strict {
            crate::rpc::framing::FrameReader::strict(data, max)
        } else {
            let mut reader = crate::rpc::framing::FrameReader::new(data);
            reader.relax(max);
            reader
        };
        while let Ok(Some(frame)) = block_on(reader.next()) {
            match frame {
                crate::rpc::framing::Frame::Message(bytes) => {
                    let _ = crate::rpc::message::classify(&bytes);
                }
                // A strict reader stops at an oversized frame: the connection closes there.
                crate::rpc::framing::Frame::Oversized(_) if strict => break,
                _ => {}
            }
        }
    }
}

/// The dispatcher's params decoding, into the params of the busiest methods.
pub fn params(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    use crate::api::params::parse;
    let raw = Some(text);
    let _ = parse::<initialize::InitializeParams>(raw);
    let _ = parse::<session::SessionCreateParams>(raw);
    let _ = parse::<session::SessionListParams>(raw);
    let _ = parse::<session::SessionUpdateParams>(raw);
    let _ = parse::<input::PromptParams>(raw);
    let _ = parse::<event::SubscribeParams>(raw);
    let _ = parse::<event::EventsParams>(raw);
    let _ = parse::<turn::MessagesParams>(raw);
    let _ = parse::<approval::ApprovalRespondParams>(raw);
}

pub fn sse_chat(data: &[u8]) {
    let _ = crate::provider::openai_chat::replay(data);
}

pub fn sse_responses(data: &[u8]) {
    let _ = crate::provider::openai_responses::replay(data);
}

pub fn sse_anthropic(data: &[u8]) {
    let _ = crate::provider::anthropic::replay(data);
}

/// The patch parser, and each parsed file's hunks applied to the input itself.
pub fn patch(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(ops) = crate::tool::patch::parse(&text) {
        for op in ops {
            if let crate::tool::patch::PatchOp::Update { hunks, .. } = op {
                let _ = crate::tool::patch::apply(&text, &hunks);
            }
        }
    }
}

/// The JSONC reader: whatever it makes of the text, serde must be able to take it or refuse it.
/// The JSONC reader, and on every text that reads as an object, the in-place editor: an edit it accepts must
/// leave text that still reads, with the value set (or gone).
pub fn jsonc(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let json = crate::config::jsonc::to_json(&text);
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(&json) else { return };
    let first = object.keys().next().cloned();
    let mut paths = vec![vec!["zz".to_owned()], vec!["a".to_owned(), "b".to_owned()]];
    if let Some(first) = first {
        paths.push(vec![first.clone()]);
        paths.push(vec![first, "zz".to_owned()]);
    }
    let reads = |text: &str| -> serde_json::Value {
        let json = crate::config::jsonc::to_json(text);
        match serde_json::from_str(&json) {
            Ok(value) => value,
            Err(e) => panic!("an edit broke the text: {e}\n{text}"),
        }
    };
    let at = |value: &serde_json::Value, keys: &[String]| keys.iter().try_fold(value.clone(), |v, k| v.get(k).cloned());
    let unique = !has_duplicate_keys(&serde_json::from_str(&json).unwrap_or_default(), &json);
    for keys in paths {
        if let Ok(edited) = crate::config::edit::set(&text, &keys, &serde_json::json!({ "x": [1, "}"] })) {
            let value = reads(&edited);
            assert!(!unique || at(&value, &keys) == Some(serde_json::json!({ "x": [1, "}"] })), "{edited}");
        }
        if let Ok(Some(edited)) = crate::config::edit::unset(&text, &keys) {
            let value = reads(&edited);
            assert!(!unique || at(&value, &keys).is_none(), "{edited}");
        }
    }
}

/// Whether the text has an object with a key twice (the parsed value keeps the last, the editor edits the first):
/// approximated by comparing the number of keys read with the number of `":` pairs written.
fn has_duplicate_keys(value: &serde_json::Value, json: &str) -> bool {
    fn count(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Object(m) => m.len() + m.values().map(count).sum::<usize>(),
            serde_json::Value::Array(a) => a.iter().map(count).sum(),
            _ => 0,
        }
    }
    let written = json.matches("\":").count() + json.matches("\" :").count();
    count(value) != written
}

pub fn shell(data: &[u8]) {
    let _ = crate::permission::bash::analyse(&String::from_utf8_lossy(data));
}
