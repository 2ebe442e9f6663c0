//! A TCP relay that can break a link: the demo puts one between a ward and
//! the city to show an outage, and the tests use it to cut connections and
//! to lose the city's replies (acks) while the ward's requests get through.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the relay does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Forward both ways.
    Up,
    /// Close open connections and refuse new ones.
    Cut,
    /// Forward client to server; discard everything server to client.
    DropReplies,
}

/// A running relay from its own loopback port to a target address.
pub struct Relay {
    addr: SocketAddr,
    mode: Arc<watch::Sender<LinkMode>>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Starts relaying from a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(watch::channel(LinkMode::Up).0);
        let relay_mode = mode.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *relay_mode.borrow() == LinkMode::Cut {
                    continue; // dropped at once
                }
                tokio::spawn(relay(inbound, target, relay_mode.subscribe()));
            }
        });
        Ok(Relay { addr, mode, task })
    }

    /// The address to connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets how traffic is treated from now on.
    pub fn set(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    /// Cuts the link: open connections are closed, new ones refused.
    pub fn cut(&self) {
        self.set(LinkMode::Cut);
    }

    /// Restores the link.
    pub fn heal(&self) {
        self.set(LinkMode::Up);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(inbound: TcpStream, target: SocketAddr, mut mode: watch::Receiver<LinkMode>) {
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let (mut client_rd, mut client_wr) = inbound.into_split();
    let (mut server_rd, mut server_wr) = outbound.into_split();
    let up = tokio::io::copy(&mut client_rd, &mut server_wr);
    let replies = {
        let mode = mode.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = server_rd.read(&mut buf).await?;
                if n == 0 {
                    return std::io::Result::Ok(());
                }
                if *mode.borrow() != LinkMode::DropReplies {
                    client_wr.write_all(&buf[..n]).await?;
                }
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = replies => {}
        _ = mode.wait_for(|m| *m == LinkMode::Cut) => {}
    }
}
