//! A request-counting HTTP/1.1 proxy for tests and benchmarks: sits between a client and a real
//! server on 127.0.0.1, forwards every byte unchanged, and counts the requests by method and
//! the TCP connections opened, so a test can say "a small registration is one PUT".
//!
//! It reads each request's head and forwards its body by `Content-Length` or chunked encoding,
//! so requests sent one after another on a kept-alive connection are each counted. Responses
//! are piped back untouched.
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
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Listens on a free port of 127.0.0.1, forwarding to `upstream`.
    ///
    /// Panics if no port can be bound (a test-only tool).
    pub async fn start(upstream: SocketAddr) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let counts = Arc::new(Mutex::new(Counts::default()));
        let c = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                lock(&c).connections += 1;
                tokio::spawn(relay(client, upstream, c.clone()));
            }
        });
        CountingProxy { addr, counts, task }
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
async fn relay(client: TcpStream, upstream: SocketAddr, counts: Arc<Mutex<Counts>>) {
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
    while let Ok(Some(method)) = forward_request(&mut requests, &mut server_write).await {
        *lock(&counts).by_method.entry(method).or_default() += 1;
    }
    let _ = server_write.shutdown().await;
    let _ = back.await;
}

/// Forwards one request (head and body); returns its method, or `None` at the end of the
/// connection.
async fn forward_request<R, W>(from: &mut R, to: &mut W) -> std::io::Result<Option<String>>
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
    to.write_all(&head).await?;
    let text = String::from_utf8_lossy(&head);
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
                    while let Ok(Some(_)) = forward_request(&mut r, &mut tokio::io::sink()).await {
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
}
