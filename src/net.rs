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

/// gRPC health (`grpc.health.v1`, reporting SERVING for `services`) and
/// server reflection, so that standard tools and load balancers work.
pub async fn health_and_reflection(
    services: &[&str],
) -> anyhow::Result<(
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
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
    Ok((health, reflection))
}
