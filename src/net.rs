//! Accepting TCP connections for the gRPC servers.

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};

/// How long any unary call, or the start of a stream, may take.
pub const RPC_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// The connections `listener` accepts, with Nagle's algorithm off: small
/// gRPC frames (acks, replies) must not wait for delayed TCP acks.
pub fn incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// Binds a Unix socket at `path` (replacing a stale one) that only its
/// owner and group may use (mode 660).
pub fn unix_listener(path: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        std::fs::remove_file(path).map_err(|e| anyhow::anyhow!("cannot replace {}: {e}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}
