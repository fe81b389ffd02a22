//! Listeners: stdio (one connection), a Unix socket (mode 0600) and TCP, each accepting many connections
//! (WebSocket is in `websocket.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use super::conn::{Ended, Server};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {what}: {source}")]
    Bind { what: String, source: std::io::Error },
    #[error("{0} is in use by a running engine")]
    SocketInUse(PathBuf),
}

/// Serves stdin/stdout until the client closes stdin or sends `exit`; returns the process exit code.
pub async fn stdio(server: Arc<Server>) -> i32 {
    match server.serve(tokio::io::stdin(), tokio::io::stdout()).await {
        Ended::Closed => 0,
        Ended::Exit(code) => code,
    }
}

pub async fn unix(server: Arc<Server>, path: &Path) -> Result<(), ListenError> {
    let listener = bind_unix(path)?;
    let limit = Arc::new(Semaphore::new(server.max_connections()));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    tracing::info!("refused a connection on {}: {} are open", path.display(), server.max_connections());
                    continue;
                };
                let server = Arc::clone(&server);
                tokio::spawn(async move {
                    let (reader, writer) = stream.into_split();
                    server.serve(reader, writer).await;
                    drop(permit);
                });
            }
            Err(e) => tracing::error!("accept on {}: {e}", path.display()),
        }
    }
}

/// Binds with a umask that makes the socket file 0600 from the start, replacing a stale socket file.
fn bind_unix(path: &Path) -> Result<UnixListener, ListenError> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ListenError::SocketInUse(path.to_owned()));
        }
        let _ = std::fs::remove_file(path);
    }
    // SAFETY: umask only swaps the process's file-mode mask; it is restored right after the bind.
    let previous = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(previous) };
    bound.map_err(|source| ListenError::Bind { what: path.display().to_string(), source })
}

pub async fn tcp(server: Arc<Server>, addr: SocketAddr) -> Result<(), ListenError> {
    let listener =
        TcpListener::bind(addr).await.map_err(|source| ListenError::Bind { what: addr.to_string(), source })?;
    let limit = Arc::new(Semaphore::new(server.max_connections()));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    tracing::info!("refused a connection from {peer}: {} are open", server.max_connections());
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let server = Arc::clone(&server);
                tokio::spawn(async move {
                    let (reader, writer) = stream.into_split();
                    server.serve(reader, writer).await;
                    drop(permit);
                });
            }
            Err(e) => tracing::error!("accept on {addr}: {e}"),
        }
    }
}
