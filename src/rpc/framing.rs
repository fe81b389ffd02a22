//! Frames on a byte stream: LSP `Content-Length` headers or newline-delimited JSON, detected from the first bytes
//! of a connection and used for the replies too.
//!
//! Errors never end the stream: an oversized frame is skipped and reported, a broken header block is reported and
//! reading resynchronises on the next blank line.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Frames above this size are answered with an error and skipped.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Before `initialize`, a peer is unknown: a frame above this size ends the connection, so that idle strangers
/// cannot hold large buffers.
pub const MAX_FRAME_BEFORE_INIT: usize = 64 * 1024;
const MAX_HEADER_LINE: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Ndjson,
    ContentLength,
}

#[derive(Debug, PartialEq)]
pub enum Frame {
    Message(Vec<u8>),
    /// Skipped: the frame was larger than the limit.
    Oversized(usize),
    /// Skipped: a header block without a usable `Content-Length`.
    BadHeader(String),
}

pub struct FrameReader<R> {
    inner: R,
    framing: Option<Framing>,
    max: usize,
    /// Whether an oversized frame is read past (and reported) or left unread, the stream then being unusable.
    skip_oversized: bool,
}

impl<R: AsyncBufRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, framing: None, max: MAX_FRAME, skip_oversized: true }
    }

    /// Frames above `max` are reported as `Oversized` at once, without reading them: the caller closes.
    pub fn strict(inner: R, max: usize) -> Self {
        Self { inner, framing: None, max, skip_oversized: false }
    }

    /// From now on, oversized frames up to any size are read past and reported, and `max` is the limit.
    pub fn relax(&mut self, max: usize) {
        self.max = max;
        self.skip_oversized = true;
    }

    #[cfg(test)]
    fn with_max(inner: R, max: usize) -> Self {
        Self { inner, framing: None, max, skip_oversized: true }
    }

    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// The next frame, or `None` at end of stream.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        let framing = match self.framing {
            Some(f) => f,
            None => match self.detect().await? {
                Some(f) => {
                    self.framing = Some(f);
                    f
                }
                None => return Ok(None),
            },
        };
        match framing {
            Framing::Ndjson => self.next_line().await,
            Framing::ContentLength => self.next_content_length().await,
        }
    }

    async fn detect(&mut self) -> std::io::Result<Option<Framing>> {
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                return Ok(None);
            }
            let blank = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
            if blank < buf.len() {
                let framing =
                    if buf[blank].eq_ignore_ascii_case(&b'c') { Framing::ContentLength } else { Framing::Ndjson };
                self.inner.consume(blank);
                return Ok(Some(framing));
            }
            self.inner.consume(blank);
        }
    }

    async fn next_line(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            match read_line(&mut self.inner, self.max, self.skip_oversized).await? {
                Line::End => return Ok(None),
                Line::TooLong(n) => return Ok(Some(Frame::Oversized(n))),
                Line::Text(line) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Line::Text(line) => return Ok(Some(Frame::Message(line))),
            }
        }
    }

    async fn next_content_length(&mut self) -> std::io::Result<Option<Frame>> {
        let mut length: Option<Result<usize, String>> = None;
        let mut saw_anything = false;
        loop {
            let line = match read_line(&mut self.inner, MAX_HEADER_LINE, self.skip_oversized).await? {
                Line::End => return Ok(None),
                Line::TooLong(n) if !self.skip_oversized => return Ok(Some(Frame::Oversized(n))),
                Line::TooLong(n) => {
                    length = Some(Err(format!("header line of {n} bytes")));
                    saw_anything = true;
                    continue;
                }
                Line::Text(line) => line,
            };
            let line = trim_ascii(&line);
            if line.is_empty() {
                if saw_anything {
                    break;
                }
                continue;
            }
            saw_anything = true;
            let text = String::from_utf8_lossy(line);
            match text.split_once(':') {
                Some((name, value)) if name.trim().eq_ignore_ascii_case("content-length") => {
                    length = Some(value.trim().parse::<usize>().map_err(|_| format!("bad Content-Length {value:?}")));
                }
                Some(_) => {} // Content-Type and friends
                None if length.is_none() => length = Some(Err(format!("not a header: {text:.80}"))),
                None => {}
            }
        }
        match length {
            None => Ok(Some(Frame::BadHeader("missing Content-Length".into()))),
            Some(Err(reason)) => Ok(Some(Frame::BadHeader(reason))),
            Some(Ok(n)) if n > self.max && !self.skip_oversized => Ok(Some(Frame::Oversized(n))),
            Some(Ok(n)) if n > self.max => {
                let skipped = tokio::io::copy(&mut (&mut self.inner).take(n as u64), &mut tokio::io::sink()).await?;
                if (skipped as usize) < n {
                    return Ok(None);
                }
                Ok(Some(Frame::Oversized(n)))
            }
            Some(Ok(n)) => {
                let mut body = vec![0; n];
                match self.inner.read_exact(&mut body).await {
                    Ok(_) => Ok(Some(Frame::Message(body))),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

enum Line {
    Text(Vec<u8>),
    TooLong(usize),
    End,
}

/// Reads one `\n`-terminated line of at most `max` bytes; a longer line is reported by its size, consumed whole
/// when `skip` is set and left where it passed the limit otherwise.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize, skip: bool) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut total = 0usize;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(match total {
                0 => Line::End,
                n if n > max => Line::TooLong(n),
                _ => Line::Text(line),
            });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        total += chunk.len();
        if total <= max {
            line.extend_from_slice(chunk);
        } else if !skip {
            return Ok(Line::TooLong(total));
        } else {
            line = Vec::new();
        }
        let used = done.unwrap_or(chunk.len());
        r.consume(used);
        if done.is_some() {
            return Ok(if total > max { Line::TooLong(total) } else { Line::Text(line) });
        }
    }
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !first.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !last.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    s
}

/// Writes one JSON message in the connection's framing.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, framing: Framing, json: &[u8]) -> std::io::Result<()> {
    match framing {
        Framing::Ndjson => {
            w.write_all(json).await?;
            w.write_all(b"\n").await
        }
        Framing::ContentLength => {
            w.write_all(format!("Content-Length: {}\r\n\r\n", json.len()).as_bytes()).await?;
            w.write_all(json).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> (Option<Framing>, Vec<Frame>) {
        let mut reader = FrameReader::with_max(input, max);
        let mut out = Vec::new();
        while let Some(frame) = reader.next().await.unwrap() {
            out.push(frame);
        }
        (reader.framing(), out)
    }

    fn msg(s: &str) -> Frame {
        Frame::Message(s.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn ndjson_skips_blank_lines_and_oversized_lines() {
        let (framing, got) = frames(b"\n {\"a\":1}\n\n{\"b\":22222222}\n{\"c\":3}\r\n", 9).await;
        assert_eq!(framing, Some(Framing::Ndjson));
        assert_eq!(got, vec![msg("{\"a\":1}"), Frame::Oversized(14), msg("{\"c\":3}\r")]);
    }

    #[tokio::test]
    async fn content_length_with_extra_headers_and_case() {
        let input = b"Content-Length: 7\r\nContent-Type: x\r\n\r\n{\"a\":1}content-length: 7\r\n\r\n{\"b\":2}";
        let (framing, got) = frames(input, 100).await;
        assert_eq!(framing, Some(Framing::ContentLength));
        assert_eq!(got, vec![msg("{\"a\":1}"), msg("{\"b\":2}")]);
    }

    #[tokio::test]
    async fn content_length_survives_bad_headers_and_oversized_bodies() {
        let input =
            b"Content-Length: 12\r\n\r\n{\"big\":1234}Content-Length: x\r\n\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        let (_, got) = frames(input, 10).await;
        assert_eq!(
            got,
            vec![Frame::Oversized(12), Frame::BadHeader("bad Content-Length \" x\"".into()), msg("{\"a\":1}")]
        );
    }

    #[tokio::test]
    async fn strict_readers_stop_at_the_limit_without_reading_on() {
        let mut reader = FrameReader::strict(&b"{\"a\":1}\n{\"b\":2222222222}\n{\"c\":3}\n"[..], 9);
        assert_eq!(reader.next().await.unwrap(), Some(msg("{\"a\":1}")));
        assert!(matches!(reader.next().await.unwrap(), Some(Frame::Oversized(n)) if n > 9));
        let mut reader = FrameReader::strict(&b"Content-Length: 900000000\r\n\r\n{"[..], 9);
        assert_eq!(reader.next().await.unwrap(), Some(Frame::Oversized(900000000)));
    }

    #[tokio::test]
    async fn truncated_body_is_end_of_stream() {
        let (_, got) = frames(b"Content-Length: 70\r\n\r\n{\"a\"", 100).await;
        assert!(got.is_empty());
    }
}
