//! Accepting TCP connections for the gRPC servers.

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};

/// A connection a gRPC server can serve: TCP, a Unix socket, or a
/// simulated network in the tests. The city and the ward agent take a
/// stream of these, which is how the simulation runs them.
pub trait ServerConn:
    tokio::io::AsyncRead
    + tokio::io::AsyncWrite
    + tonic::transport::server::Connected<ConnectInfo: Clone + Send + Sync + 'static>
    + Unpin
    + Send
    + 'static
{
}

impl<T> ServerConn for T where
    T: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected<ConnectInfo: Clone + Send + Sync + 'static>
        + Unpin
        + Send
        + 'static
{
}

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

/// How long a client may take over its TLS handshake.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The TLS connections made over `incoming`. Each handshake runs in a task
/// of its own (a slow or silent client holds up no other) within
/// [`HANDSHAKE_TIMEOUT`]; one that fails is logged and dropped. Each uses
/// the configuration `config` holds when the connection arrives, so a
/// reload applies from the next connection on. Accepting stops when the
/// server drops the stream.
pub fn tls_incoming<I, IO, IE>(
    incoming: I,
    config: tokio::sync::watch::Receiver<std::sync::Arc<rustls::ServerConfig>>,
) -> impl Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<IO>>>
where
    I: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let io = match tokio::select! {
                conn = incoming.next() => conn,
                _ = tx.closed() => return,
            } {
                None => return,
                Some(Ok(io)) => Some(io),
                Some(Err(e)) => {
                    tracing::warn!(error = %e.into(), "cannot accept a connection");
                    None
                }
            };
            let Some(io) = io else {
                // Out of file descriptors, say: give it a moment.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(config.borrow().clone());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Binds a Unix socket at `path` that only its owner and group may use
/// (mode 660). An earlier run's socket is replaced; anything else at
/// `path` (a file, a socket something listens on) is an error, and left
/// alone. The socket is bound in a private directory beside `path`, given
/// its mode there, and only then linked at `path`: no one can connect to
/// it before it has its final mode, whatever the umask.
pub fn unix_listener(path: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "socket {shown} is in use: another process (another ward agent?) listens on it"
                );
            }
            std::fs::remove_file(path).map_err(|e| anyhow::anyhow!("cannot replace socket {shown}: {e}"))?;
        }
        Ok(_) => anyhow::bail!(
            "socket {shown}: the path exists and is not a socket; it is left alone: choose another path for `socket`"
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("socket {shown}: {e}"),
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let private = tempfile::Builder::new()
        .prefix(".wardsync-socket-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(dir)
        .map_err(|e| anyhow::anyhow!("cannot create the socket in {}: {e}", dir.display()))?;
    let bound = private.path().join("api.sock");
    let listener = tokio::net::UnixListener::bind(&bound)
        .map_err(|e| anyhow::anyhow!("cannot listen on {shown}: {e}"))?;
    std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o660))?;
    // A link fails if something took the path meanwhile: it is never replaced.
    std::fs::hard_link(&bound, path).map_err(|e| anyhow::anyhow!("cannot create socket {shown}: {e}"))?;
    Ok(listener)
}

/// gRPC health (`grpc.health.v1`, reporting SERVING for `services`) and
/// server reflection, so that standard tools and load balancers work; with
/// the reporter that changes what health says.
pub async fn health_and_reflection(
    services: &[&str],
) -> anyhow::Result<(
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_health::server::HealthReporter,
)> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for s in services {
        reporter.set_service_status(*s, tonic_health::ServingStatus::Serving).await;
    }
    reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection");
    for s in services {
        builder = builder.with_service_name(*s);
    }
    let reflection = builder.build_v1()?;
    Ok((health, reflection, reporter))
}
