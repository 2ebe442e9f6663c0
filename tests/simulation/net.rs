//! The two adapters that put tonic on turmoil's simulated network: a
//! stream of accepted connections for servers, and a connector for clients.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint};

/// How long a client call waits for its answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A simulated TCP connection the tonic server can serve.
pub struct SimConn(turmoil::net::TcpStream);

/// Reported as a TCP connection, so tonic hands the peer's TLS certificate
/// to the services as it does in production.
impl Connected for SimConn {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        TcpConnectInfo { local_addr: self.0.local_addr().ok(), remote_addr: self.0.peer_addr().ok() }
    }
}

impl AsyncRead for SimConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Connections accepted on a simulated port.
pub fn incoming(port: u16) -> impl tokio_stream::Stream<Item = std::io::Result<SimConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::task::spawn_local(async move {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await.expect("bind");
        loop {
            let conn = listener.accept().await.map(|(s, _)| SimConn(s));
            if tx.send(conn).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A channel to `host:port` over the simulated network (TLS if given).
/// Clients' calls give up after `CALL_TIMEOUT`: a partition drops bytes.
pub async fn channel(
    host: &'static str,
    port: u16,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint =
        Endpoint::from_shared(format!("{scheme}://{host}:{port}")).unwrap().timeout(CALL_TIMEOUT);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    connect(endpoint, host, port).await
}

/// Connects `endpoint` (whatever its settings) to `host:port` over the simulated network.
pub async fn connect(
    endpoint: Endpoint,
    host: &'static str,
    port: u16,
) -> Result<Channel, tonic::transport::Error> {
    endpoint
        .connect_with_connector(tower::service_fn(move |_| async move {
            let s = turmoil::net::TcpStream::connect((host, port)).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
        }))
        .await
}
