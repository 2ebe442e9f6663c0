//! A TCP relay that can break a link: the demo puts one between a ward and
//! the city to show an outage, and the tests use it to cut connections, to
//! lose the city's replies (acks) while the ward's requests get through, and
//! to slow a link down.

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
    /// Forward both ways, holding every chunk this many milliseconds.
    Delay(u64),
}

/// A running relay from its own loopback port to a target address.
pub struct Relay {
    addr: SocketAddr,
    mode: Arc<watch::Sender<LinkMode>>,
    target: Arc<watch::Sender<SocketAddr>>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Starts relaying from a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(watch::channel(LinkMode::Up).0);
        let target = Arc::new(watch::channel(target).0);
        let (relay_mode, relay_target) = (mode.clone(), target.clone());
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *relay_mode.borrow() == LinkMode::Cut {
                    continue; // dropped at once
                }
                tokio::spawn(relay(inbound, relay_target.subscribe(), relay_mode.subscribe()));
            }
        });
        Ok(Relay { addr, mode, target, task })
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

    /// Relays to `target` from now on: open connections are closed (the
    /// client reconnects, to the new target).
    pub fn retarget(&self, target: SocketAddr) {
        self.target.send_replace(target);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    inbound: TcpStream,
    mut target: watch::Receiver<SocketAddr>,
    mut mode: watch::Receiver<LinkMode>,
) {
    let to = *target.borrow_and_update();
    let Ok(outbound) = TcpStream::connect(to).await else {
        return;
    };
    let (client_rd, client_wr) = inbound.into_split();
    let (server_rd, server_wr) = outbound.into_split();
    tokio::select! {
        _ = forward(client_rd, server_wr, mode.clone(), None) => {}
        _ = forward(server_rd, client_wr, mode.clone(), Some(LinkMode::DropReplies)) => {}
        _ = mode.wait_for(|m| *m == LinkMode::Cut) => {}
        _ = target.changed() => {}
    }
}

/// Copies `rd` to `wr` as the mode says, discarding what is read while the
/// mode is `discard_in`.
async fn forward(
    mut rd: impl AsyncReadExt + Unpin,
    mut wr: impl AsyncWriteExt + Unpin,
    mode: watch::Receiver<LinkMode>,
    discard_in: Option<LinkMode>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let now = *mode.borrow();
        if Some(now) == discard_in {
            continue;
        }
        if let LinkMode::Delay(ms) = now {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        wr.write_all(&buf[..n]).await?;
    }
}
