//! The WebSocket listener: one JSON-RPC message per text frame, for browser panels and web frontends.
//!
//! The upgrade request is where a connection is judged, before any JSON-RPC: a foreign `Origin` gets 403 and a
//! missing or wrong token 401. An accepted socket is bridged onto the byte-stream server as newline-delimited JSON, so
//! every rule of the other listeners (lifecycle, ordering, limits, bad frames answered) holds here unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use keel_protocol::error as code;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::auth::{origin_allowed, tokens_match};
use super::conn::Server;
use super::framing::MAX_FRAME;
use super::listen::ListenError;
use super::message;

/// A client that connects and never finishes the upgrade must not hold a connection slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes in flight between the socket and the server; the server's own queues do the real buffering.
const BRIDGE_BUFFER: usize = 64 * 1024;
const BINARY_REFUSED: &str = "binary frames are not accepted: send each JSON-RPC message as one UTF-8 text frame";

/// Which browser pages may connect besides loopback ones (`--allow-origin`).
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    pub allowed: Vec<String>,
}

pub async fn websocket(server: Arc<Server>, addr: SocketAddr, origins: OriginPolicy) -> Result<(), ListenError> {
    let listener =
        TcpListener::bind(addr).await.map_err(|source| ListenError::Bind { what: format!("ws://{addr}"), source })?;
    let limit = Arc::new(Semaphore::new(server.max_connections()));
    let origins = Arc::new(origins);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    tracing::info!("refused a connection from {peer}: {} are open", server.max_connections());
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let server = Arc::clone(&server);
                let origins = Arc::clone(&origins);
                tokio::spawn(async move {
                    let upgrade = tokio::time::timeout(HANDSHAKE_TIMEOUT, upgrade(stream, &server, &origins));
                    match upgrade.await {
                        Ok(Ok(socket)) => bridge(server, socket).await,
                        Ok(Err(e)) => tracing::info!("refused a WebSocket upgrade from {peer}: {e}"),
                        Err(_) => tracing::info!("refused a WebSocket upgrade from {peer}: it took too long"),
                    }
                    drop(permit);
                });
            }
            Err(e) => tracing::error!("accept on ws://{addr}: {e}"),
        }
    }
}

async fn upgrade(
    stream: TcpStream,
    server: &Server,
    origins: &OriginPolicy,
) -> Result<WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    // The error type is tungstenite's callback signature, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let judge = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        match judge_upgrade(request, server.required_token(), origins) {
            Ok(()) => Ok(response),
            Err((status, reason)) => Err(refusal(status, reason)),
        }
    };
    let mut config = WebSocketConfig::default();
    // Twice the frame limit, so that a message a little over it is answered and skipped like on the other
    // listeners, instead of ending the connection.
    config.max_message_size = Some(MAX_FRAME * 2);
    config.max_frame_size = Some(MAX_FRAME * 2);
    tokio_tungstenite::accept_hdr_async_with_config(stream, judge, Some(config)).await
}

/// The origin first (a foreign page learns nothing about the token), then the token: from `Authorization: Bearer`,
/// or from `?token=` since browsers cannot set headers on a WebSocket.
fn judge_upgrade(
    request: &Request,
    required_token: Option<&str>,
    origins: &OriginPolicy,
) -> Result<(), (StatusCode, &'static str)> {
    let origin = request.headers().get("origin").map(|v| v.to_str().unwrap_or("?"));
    if !origin_allowed(origin, &origins.allowed) {
        return Err((StatusCode::FORBIDDEN, "this origin may not connect; see keel serve --allow-origin"));
    }
    if let Some(required) = required_token {
        let bearer = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let query = request
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")))
            .map(percent_decoded);
        let given = bearer.map(str::to_owned).or(query);
        if !given.is_some_and(|given| tokens_match(&given, required)) {
            return Err((StatusCode::UNAUTHORIZED, "bad or missing token"));
        }
    }
    Ok(())
}

/// A query value as the page meant it (`encodeURIComponent`); malformed escapes are kept as they are.
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn refusal(status: StatusCode, reason: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(format!("{reason}\n")));
    *response.status_mut() = status;
    response
}

/// Runs one accepted socket: text frames become lines for the server, the server's lines become text frames.
async fn bridge(server: Arc<Server>, socket: WebSocketStream<TcpStream>) {
    let (mut sink, mut incoming) = socket.split();
    let (engine_side, bridge_side) = tokio::io::duplex(BRIDGE_BUFFER);
    let (engine_reader, engine_writer) = tokio::io::split(engine_side);
    let (from_engine, mut to_engine) = tokio::io::split(bridge_side);
    // Answers the bridge gives itself, to frames the server never sees.
    let (answers, mut own_answers) = mpsc::channel::<Vec<u8>>(16);

    let outbound = tokio::spawn(async move {
        let mut lines = BufReader::new(from_engine).lines();
        loop {
            let text = tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) => line,
                    _ => break,
                },
                Some(answer) = own_answers.recv() => String::from_utf8_lossy(&answer).into_owned(),
            };
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let inbound = tokio::spawn(async move {
        while let Some(message) = incoming.next().await {
            let line = match message {
                Ok(Message::Text(text)) => match as_line(text.as_str()) {
                    Ok(line) => line,
                    Err(answer) => {
                        let _ = answers.send(answer).await;
                        continue;
                    }
                },
                Ok(Message::Binary(_)) => {
                    let _ =
                        answers.send(message::error(&Value::Null, code::INVALID_REQUEST, BINARY_REFUSED, None)).await;
                    continue;
                }
                Ok(Message::Close(_)) => break,
                // Pings are answered by the socket itself.
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!("WebSocket read ended: {e}");
                    break;
                }
            };
            if to_engine.write_all(&line).await.is_err() {
                break;
            }
        }
        // End of input: the server ends the connection as it does for a closed stream.
        let _ = to_engine.shutdown().await;
    });

    server.serve_authenticated(engine_reader, engine_writer).await;
    inbound.abort();
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, outbound).await;
}

/// One message as one line of newline-delimited JSON. JSON only allows raw line breaks as whitespace between
/// tokens (inside strings they are escaped), so turning them into spaces keeps the message intact.
fn as_line(text: &str) -> Result<Vec<u8>, Vec<u8>> {
    let trimmed = text.trim_start();
    // The server would take a leading `C` for an LSP header block, a framing WebSocket does not use.
    if trimmed.starts_with(['c', 'C']) {
        let reason = "parse error: a text frame must hold one JSON-RPC message";
        return Err(message::error(&Value::Null, code::PARSE_ERROR, reason, None));
    }
    let mut line: Vec<u8> = trimmed.bytes().map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }).collect();
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], uri: &str) -> Request {
        let mut builder = Request::builder().uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap_or_default()
    }

    #[test]
    fn upgrades_are_judged_by_origin_then_token() {
        let origins = OriginPolicy::default();
        let status = |r: Result<(), (StatusCode, &str)>| r.err().map(|(status, _)| status.as_u16());
        assert_eq!(status(judge_upgrade(&request(&[], "/"), None, &origins)), None);
        let foreign = request(&[("origin", "https://evil.example")], "/?token=t");
        assert_eq!(status(judge_upgrade(&foreign, Some("t"), &origins)), Some(403));
        assert_eq!(status(judge_upgrade(&request(&[], "/"), Some("t"), &origins)), Some(401));
        assert_eq!(status(judge_upgrade(&request(&[], "/?token=x"), Some("t"), &origins)), Some(401));
        assert_eq!(status(judge_upgrade(&request(&[], "/?a=1&token=t"), Some("t"), &origins)), None);
        let escaped = request(&[], "/?token=a%2Bb%20c");
        assert_eq!(status(judge_upgrade(&escaped, Some("a+b c"), &origins)), None);
        let bearer = request(&[("authorization", "Bearer t")], "/");
        assert_eq!(status(judge_upgrade(&bearer, Some("t"), &origins)), None);
    }

    #[test]
    fn a_message_becomes_one_line() {
        assert_eq!(as_line("{\"a\":\n\"b\\nc\"}\r\n"), Ok(b"{\"a\": \"b\\nc\"}  \n".to_vec()));
        assert!(as_line("Content-Length: 2\r\n\r\n{}").is_err());
    }
}
