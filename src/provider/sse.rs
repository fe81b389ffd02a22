//! A server-sent-events parser fed with whatever chunks the network delivers.

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// `message` when the server named none.
    pub event: String,
    pub data: String,
}

#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes and returns every event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data {
                    let event =
                        if self.event.is_empty() { "message".to_owned() } else { std::mem::take(&mut self.event) };
                    out.push(SseEvent { event, data: std::mem::take(&mut self.data) });
                }
                self.event.clear();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => self.event = value.to_owned(),
                "data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }

    /// The event left without its closing blank line when the stream ended, if any.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            self.push(&rest);
            self.push(b"\n");
        }
        if self.has_data {
            self.has_data = false;
            let event = if self.event.is_empty() { "message".to_owned() } else { std::mem::take(&mut self.event) };
            return Some(SseEvent { event, data: std::mem::take(&mut self.data) });
        }
        None
    }
}

/// Feeds a whole body through a wire's event handler, as a stream delivering it at once would, then `finish`;
/// returns what the wire reported and how it ended. For fuzzing and replaying captured streams.
pub(crate) fn replay(
    body: &[u8],
    mut on_event: impl FnMut(SseEvent, &super::EventSink) -> Result<super::http::Flow, super::ProviderError>,
    finish: impl FnOnce(&super::EventSink),
) -> (Vec<super::StreamEvent>, Result<(), super::ProviderError>) {
    let (sink, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut parser = SseParser::default();
    let mut result = Ok(());
    for event in parser.push(body).into_iter().chain(parser.finish()) {
        match on_event(event, &sink) {
            Ok(super::http::Flow::Continue) => {}
            Ok(super::http::Flow::Done) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    finish(&sink);
    drop(sink);
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    (events, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere() {
        let input = b"event: a\ndata: {\"x\":1}\n\n: comment\ndata: one\ndata: two\n\ndata: [DONE]\n\n";
        for split in 0..input.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&input[..split]);
            got.extend(p.push(&input[split..]));
            assert_eq!(
                got,
                vec![
                    SseEvent { event: "a".into(), data: "{\"x\":1}".into() },
                    SseEvent { event: "message".into(), data: "one\ntwo".into() },
                    SseEvent { event: "message".into(), data: "[DONE]".into() },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn crlf_lines() {
        let mut p = SseParser::default();
        assert_eq!(p.push(b"data: x\r\n\r\n"), vec![SseEvent { event: "message".into(), data: "x".into() }]);
    }
}
