//! A request-counting HTTP/1.1 proxy for tests and benchmarks: sits between a client and a real
//! server on 127.0.0.1, forwards every byte unchanged, and counts the requests by method and
//! the TCP connections opened, so a test can say "a small registration is one PUT".
//!
//! It reads each request's head and forwards its body by `Content-Length` or chunked encoding,
//! so requests sent one after another on a kept-alive connection are each counted. Responses
//! are piped back untouched.
//!
//! It can also hold requests back ([`CountingProxy::hold`]): a test can then make something
//! happen between a client's requests, deterministically (e.g. an object appearing before a
//! multipart upload's completing request reaches the server).
//!
//! ```no_run
//! # async fn demo(server: std::net::SocketAddr) {
//! use flowstore_core::testkit::counting::CountingProxy;
//! let proxy = CountingProxy::start(server).await;
//! // Point the client at proxy.addr(), do one operation, then:
//! let counts = proxy.take();
//! assert_eq!(counts.requests("PUT"), 1);
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What went through the proxy since it started or since the last [`CountingProxy::take`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests per method (`GET`, `PUT`, …).
    pub by_method: BTreeMap<String, usize>,
    /// TCP connections opened.
    pub connections: usize,
}

impl Counts {
    /// Requests with this method.
    pub fn requests(&self, method: &str) -> usize {
        self.by_method.get(method).copied().unwrap_or(0)
    }

    /// Requests of every method.
    pub fn total(&self) -> usize {
        self.by_method.values().sum()
    }

    /// `"1 PUT"`, `"2 GET + 1 HEAD"`: the counts as text, methods in name order.
    pub fn summary(&self) -> String {
        if self.by_method.is_empty() {
            return "none".to_string();
        }
        self.by_method
            .iter()
            .map(|(m, n)| format!("{n} {m}"))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// A running counting proxy; stops when dropped.
#[derive(Debug)]
pub struct CountingProxy {
    addr: SocketAddr,
    counts: Arc<Mutex<Counts>>,
    hold: Arc<Hold>,
    task: tokio::task::JoinHandle<()>,
}

/// Which requests are held back, how many are waiting, and when they may go.
#[derive(Debug, Default)]
struct Hold {
    /// Requests whose request line contains one of these wait; empty: none do.
    patterns: Mutex<Vec<String>>,
    /// Requests held so far.
    held: tokio::sync::watch::Sender<usize>,
    /// True once the held requests may go.
    released: tokio::sync::watch::Sender<bool>,
}

impl Hold {
    /// Waits, if `request_line` matches, until the hold is released.
    async fn wait_if_held(&self, request_line: &str) {
        let matches = self
            .patterns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|p| request_line.contains(p.as_str()));
        if !matches {
            return;
        }
        let mut released = self.released.subscribe();
        self.held.send_modify(|n| *n += 1);
        let _ = released.wait_for(|r| *r).await;
    }
}

impl CountingProxy {
    /// Listens on a free port of 127.0.0.1, forwarding to `upstream`.
    ///
    /// Panics if no port can be bound (a test-only tool).
    pub async fn start(upstream: SocketAddr) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let counts = Arc::new(Mutex::new(Counts::default()));
        let hold = Arc::new(Hold::default());
        let (c, h) = (counts.clone(), hold.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                lock(&c).connections += 1;
                tokio::spawn(relay(client, upstream, c.clone(), h.clone()));
            }
        });
        CountingProxy {
            addr,
            counts,
            hold,
            task,
        }
    }

    /// From now on, holds back every request whose request line (`POST /b/k?uploadId=… HTTP/1.1`)
    /// contains one of `patterns`: its head is read but nothing is forwarded until
    /// [`CountingProxy::release`].
    pub fn hold(&self, patterns: &[&str]) {
        *self.hold.patterns.lock().unwrap_or_else(|e| e.into_inner()) =
            patterns.iter().map(|p| p.to_string()).collect();
        self.hold.released.send_replace(false);
    }

    /// Waits until a request is being held back.
    pub async fn held(&self) {
        let mut held = self.hold.held.subscribe();
        let _ = held.wait_for(|n| *n > 0).await;
    }

    /// Lets the held requests go on to the server, and holds no more.
    pub fn release(&self) {
        self.hold
            .patterns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.hold.released.send_replace(true);
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`: the endpoint to give a client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The counts so far, resetting them to zero.
    pub fn take(&self) -> Counts {
        std::mem::take(&mut *lock(&self.counts))
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(c: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forwards one connection: responses piped back, requests parsed one by one and counted.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    counts: Arc<Mutex<Counts>>,
    hold: Arc<Hold>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, mut client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    let back = tokio::spawn(async move {
        let mut server_read = server_read;
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let mut requests = BufReader::with_capacity(256 * 1024, client_read);
    while let Ok(Some(method)) = forward_request(&mut requests, &mut server_write, &hold).await {
        *lock(&counts).by_method.entry(method).or_default() += 1;
    }
    let _ = server_write.shutdown().await;
    let _ = back.await;
}

/// Forwards one request (head and body), once `hold` lets it; returns its method, or `None` at
/// the end of the connection.
async fn forward_request<R, W>(
    from: &mut R,
    to: &mut W,
    hold: &Hold,
) -> std::io::Result<Option<String>>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    loop {
        let before = head.len();
        if from.read_until(b'\n', &mut head).await? == 0 {
            return Ok(None);
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                // A stray blank line between requests.
                head.clear();
                continue;
            }
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    hold.wait_if_held(text.lines().next().unwrap_or_default())
        .await;
    to.write_all(&head).await?;
    let method = text.split_whitespace().next().unwrap_or("?").to_string();
    let header = |name: &str| {
        text.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size_line = Vec::new();
            from.read_until(b'\n', &mut size_line).await?;
            to.write_all(&size_line).await?;
            let size = String::from_utf8_lossy(&size_line);
            let size =
                u64::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    let mut line = Vec::new();
                    if from.read_until(b'\n', &mut line).await? == 0 {
                        break;
                    }
                    to.write_all(&line).await?;
                    if line == b"\r\n" || line == b"\n" {
                        break;
                    }
                }
                break;
            }
            copy_exact(from, to, size + 2).await?;
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<u64>().ok()) {
        copy_exact(from, to, len).await?;
    }
    to.flush().await?;
    Ok(Some(method))
}

async fn copy_exact<R, W>(from: &mut R, to: &mut W, len: u64) -> std::io::Result<()>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let copied = tokio::io::copy(&mut from.take(len), to).await?;
    if copied < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny HTTP/1.1 server that answers every request `200` with an empty body, reading
    /// request bodies by Content-Length or chunked encoding (through the same parser, writing
    /// to a sink).
    async fn server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = conn.into_split();
                    let mut r = BufReader::new(r);
                    let none = Hold::default();
                    while let Ok(Some(_)) =
                        forward_request(&mut r, &mut tokio::io::sink(), &none).await
                    {
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if w.write_all(ok).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn requests_on_one_kept_alive_connection_are_each_counted() {
        let proxy = CountingProxy::start(server().await).await;
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        let requests = [
            "PUT /b/k HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello".to_string(),
            "GET /b/k HTTP/1.1\r\nhost: x\r\n\r\n".to_string(),
            "POST /b/k?uploads HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                .to_string(),
            "PUT /b/k2 HTTP/1.1\r\nhost: x\r\nContent-Length: 4\r\n\r\nGET ".to_string(),
        ];
        let mut answers = Vec::new();
        for r in &requests {
            conn.write_all(r.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 38];
            conn.read_exact(&mut buf).await.unwrap();
            answers.push(String::from_utf8(buf).unwrap());
        }
        assert!(
            answers.iter().all(|a| a.starts_with("HTTP/1.1 200")),
            "{answers:?}"
        );
        let counts = proxy.take();
        assert_eq!(counts.requests("PUT"), 2, "{counts:?}");
        assert_eq!(counts.requests("GET"), 1, "{counts:?}");
        assert_eq!(counts.requests("POST"), 1, "{counts:?}");
        assert_eq!(counts.connections, 1);
        assert_eq!(counts.summary(), "1 GET + 1 POST + 2 PUT");
        assert_eq!(proxy.take(), Counts::default(), "take resets the counts");
    }

    #[tokio::test]
    async fn held_requests_wait_until_released() {
        let proxy = CountingProxy::start(server().await).await;
        proxy.hold(&["?uploadId="]);
        let mut held = TcpStream::connect(proxy.addr()).await.unwrap();
        held.write_all(b"POST /b/k?uploadId=1 HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        proxy.held().await;
        // Others pass meanwhile.
        let mut other = TcpStream::connect(proxy.addr()).await.unwrap();
        other
            .write_all(b"PUT /b/k HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 38];
        other.read_exact(&mut buf).await.unwrap();
        assert!(buf.starts_with(b"HTTP/1.1 200"));
        let mut one = [0u8; 1];
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            held.read_exact(&mut one),
        )
        .await;
        assert!(waited.is_err(), "a held request was answered");
        proxy.release();
        held.read_exact(&mut buf).await.unwrap();
        assert!(buf.starts_with(b"HTTP/1.1 200"));
        assert_eq!(proxy.take().summary(), "1 POST + 1 PUT");
    }
}
