//! A TCP proxy between one node and Meridian, through which the harness cuts or slows
//! their link without touching either process.
//!
//! A cut direction *holds* its bytes, as TCP does while it retransmits into a dead link:
//! the proxy stops reading from the sender until the link heals, so nothing is lost or
//! corrupted, only late. New connections wait for a fully open link before they reach
//! Meridian (the handshake of a real partition does not complete either). At the end of a
//! partition the harness either lets the held bytes through (the link came back before
//! TCP gave up) or resets every connection (it did not): the node must reconnect.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// One direction of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Node to Meridian: heartbeats, instruction results.
    ToMeta,
    /// Meridian to node: acks (leases), instructions.
    FromMeta,
}

/// What the link does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFault {
    /// Bytes flow both ways.
    Healthy,
    /// Nothing flows either way.
    Blackhole,
    /// Nothing flows in this direction; the other is open.
    OneWay(Direction),
    /// Every byte arrives this much later, both ways.
    Delay(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LinkState {
    fault: LinkFault,
    /// Bumped to reset every open connection.
    generation: u64,
}

impl LinkState {
    fn open(&self, dir: Direction) -> bool {
        match self.fault {
            LinkFault::Healthy | LinkFault::Delay(_) => true,
            LinkFault::Blackhole => false,
            LinkFault::OneWay(cut) => cut != dir,
        }
    }

    fn delay(&self) -> Duration {
        match self.fault {
            LinkFault::Delay(d) => d,
            _ => Duration::ZERO,
        }
    }
}

/// A running proxy: listens on [`Proxy::addr`], forwards to Meridian.
pub struct Proxy {
    addr: SocketAddr,
    state: watch::Sender<LinkState>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (state, rx) = watch::channel(LinkState {
            fault: LinkFault::Healthy,
            generation: 0,
        });
        let task = tokio::spawn(accept_loop(listener, target, rx));
        Ok(Self { addr, state, task })
    }

    /// The address nodes connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts a fault on the link.
    pub fn set(&self, fault: LinkFault) {
        self.state.send_modify(|s| s.fault = fault);
    }

    /// Ends the fault; with `reset`, every open connection is closed (the node reconnects),
    /// otherwise held bytes flow on.
    pub fn heal(&self, reset: bool) {
        self.state.send_modify(|s| {
            s.fault = LinkFault::Healthy;
            if reset {
                s.generation += 1;
            }
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Closes the connections too: their tasks end when the state channel does.
        self.state.send_modify(|s| s.generation += 1);
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: watch::Receiver<LinkState>) {
    loop {
        match listener.accept().await {
            Ok((inbound, _)) => {
                tokio::spawn(connection(inbound, target, state.clone()));
            }
            Err(e) => {
                tracing::warn!("chaos proxy: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(inbound: TcpStream, target: SocketAddr, mut state: watch::Receiver<LinkState>) {
    let generation = state.borrow().generation;
    let reset = {
        let mut state = state.clone();
        async move {
            let _ = state.wait_for(|s| s.generation != generation).await;
        }
    };
    let relay = async move {
        // A partitioned link completes no handshake: wait until both ways are open.
        if state
            .wait_for(|s| s.open(Direction::ToMeta) && s.open(Direction::FromMeta))
            .await
            .is_err()
        {
            return;
        }
        let Ok(outbound) = TcpStream::connect(target).await else {
            return; // Meridian is down: the node sees its connection closed.
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (node_read, node_write) = inbound.into_split();
        let (meta_read, meta_write) = outbound.into_split();
        tokio::select! {
            _ = pump(node_read, meta_write, Direction::ToMeta, state.clone()) => {}
            _ = pump(meta_read, node_write, Direction::FromMeta, state) => {}
        }
    };
    // Whichever ends first drops both sockets: the connection is closed both ways.
    tokio::select! {
        _ = relay => {}
        _ = reset => {}
    }
}

/// Copies one direction, holding bytes while the direction is cut and delivering each
/// chunk `delay` after it was read.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    dir: Direction,
    state: watch::Receiver<LinkState>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let mut read_state = state.clone();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let at = Instant::now();
            if read_state.wait_for(|s| s.open(dir)).await.is_err() {
                return;
            }
            if tx.send((at, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let mut write_state = state;
    let writer = async move {
        while let Some((at, bytes)) = rx.recv().await {
            let delay = write_state.borrow().delay();
            tokio::time::sleep_until(at + delay).await;
            if write_state.wait_for(|s| s.open(dir)).await.is_err() {
                return;
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    // The reader ending (EOF) lets the writer drain what was read, then both end.
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
        s.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).await.unwrap();
        buf
    }

    #[tokio::test]
    async fn a_blackhole_holds_bytes_until_healed_and_a_reset_closes_the_connection() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"one").await, b"one");

        proxy.set(LinkFault::OneWay(Direction::FromMeta));
        s.write_all(b"two").await.unwrap();
        let mut buf = [0u8; 3];
        let held = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf)).await;
        assert!(held.is_err(), "the answer crossed a cut direction");
        proxy.heal(false);
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"two", "held bytes flow on after the heal");

        proxy.set(LinkFault::Blackhole);
        proxy.heal(true);
        let mut rest = Vec::new();
        let n = s.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "a reset closes the connection");
    }
}
