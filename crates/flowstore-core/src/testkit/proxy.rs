//! A fault-injecting TCP proxy for tests: sits between a client and a real server on 127.0.0.1
//! and, connection by connection, passes traffic through or injects a fault (reset, delay,
//! truncated request or response).
//!
//! ```no_run
//! # async fn demo(server: std::net::SocketAddr) {
//! use flowstore_core::testkit::proxy::{Fault, FaultProxy};
//! let proxy = FaultProxy::start(server, vec![Fault::Reset, Fault::TruncateResponse(10)]).await;
//! // Point the client at proxy.addr(): its first connection is reset, the second gets 10 bytes
//! // of the response, every later one passes through.
//! assert_eq!(proxy.stats().faults_injected(), 0);
//! # }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What happens to one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways untouched.
    Pass,
    /// Accept, then close at once with a TCP reset.
    Reset,
    /// Wait this long before forwarding anything.
    Delay(Duration),
    /// Forward only this many bytes of the request, then close both sides.
    TruncateRequest(usize),
    /// Forward the request, but only this many bytes of the response, then close both sides.
    TruncateResponse(usize),
}

/// Counters of what the proxy did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    connections: AtomicUsize,
    faults: AtomicUsize,
}

impl ProxyStats {
    /// Connections accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    /// Connections that got a fault other than [`Fault::Pass`].
    pub fn faults_injected(&self) -> usize {
        self.faults.load(Ordering::SeqCst)
    }
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    plan: Arc<Mutex<VecDeque<Fault>>>,
    stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1, forwarding to `upstream`; connection `i` gets
    /// `plan[i]`, later ones [`Fault::Pass`].
    pub async fn start(upstream: SocketAddr, plan: Vec<Fault>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let plan = Arc::new(Mutex::new(VecDeque::from(plan)));
        let stats = Arc::new(ProxyStats::default());
        let (p, s) = (plan.clone(), stats.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::SeqCst);
                let fault = p
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_front()
                    .unwrap_or(Fault::Pass);
                if fault != Fault::Pass {
                    s.faults.fetch_add(1, Ordering::SeqCst);
                }
                tokio::spawn(handle(client, upstream, fault));
            }
        });
        FaultProxy {
            addr,
            plan,
            stats,
            task,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends faults for the next connections.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        self.plan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(faults);
    }

    /// What the proxy has done so far.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(client: TcpStream, upstream: SocketAddr, fault: Fault) {
    match fault {
        Fault::Reset => {
            // SO_LINGER 0 makes the close a reset; on a socket with no unsent data it does not block.
            #[allow(deprecated)]
            let _ = client.set_linger(Some(Duration::ZERO));
            drop(client);
        }
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            pipe(client, upstream, None, None).await;
        }
        Fault::TruncateRequest(n) => pipe(client, upstream, Some(n), None).await,
        Fault::TruncateResponse(n) => pipe(client, upstream, None, Some(n)).await,
        Fault::Pass => pipe(client, upstream, None, None).await,
    }
}

/// Copies both ways, each direction optionally cut after a byte budget (then both close).
async fn pipe(
    client: TcpStream,
    upstream: SocketAddr,
    up_limit: Option<usize>,
    down_limit: Option<usize>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let _ = copy_limited(&mut cr, &mut sw, up_limit).await;
        let _ = sw.shutdown().await;
    };
    let down = async {
        let _ = copy_limited(&mut sr, &mut cw, down_limit).await;
        let _ = cw.shutdown().await;
    };
    // Both directions run; a direction that hits its byte budget ends the whole exchange.
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            _ = &mut up, if !up_done => {
                up_done = true;
                if up_limit.is_some() {
                    break;
                }
            }
            _ = &mut down, if !down_done => {
                down_done = true;
                if down_limit.is_some() {
                    break;
                }
            }
        }
    }
}

async fn copy_limited<R, W>(r: &mut R, w: &mut W, limit: Option<usize>) -> std::io::Result<()>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = limit.unwrap_or(usize::MAX);
    while left > 0 {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let n = n.min(left);
        w.write_all(&buf[..n]).await?;
        left -= n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            return Vec::new();
        };
        if s.write_all(msg).await.is_err() {
            return Vec::new();
        }
        let _ = s.shutdown().await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    }

    #[tokio::test]
    async fn injects_faults_in_order_then_passes() {
        let server = echo_server().await;
        let proxy = FaultProxy::start(
            server,
            vec![
                Fault::Reset,
                Fault::TruncateResponse(3),
                Fault::Delay(Duration::from_millis(20)),
            ],
        )
        .await;
        assert_eq!(round_trip(proxy.addr(), b"hello").await, b"");
        assert_eq!(round_trip(proxy.addr(), b"hello").await, b"hel");
        assert_eq!(round_trip(proxy.addr(), b"hello").await, b"hello");
        assert_eq!(round_trip(proxy.addr(), b"again").await, b"again");
        assert_eq!(proxy.stats().connections(), 4);
        assert_eq!(proxy.stats().faults_injected(), 3);
    }
}
