//! A recording TCP proxy for tests that count requests: it forwards every byte between a client
//! and a real server on 127.0.0.1 unchanged, keeps a copy of both directions, and reads the
//! HTTP/1.1 exchanges back from them (method, target, `Range`, status, `Content-Range`, body
//! length), in the order the requests were sent.
//!
//! ```no_run
//! # async fn demo(server: std::net::SocketAddr) {
//! use flowstore_core::testkit::recording::RecordingProxy;
//! let proxy = RecordingProxy::start(server).await;
//! // Point the client at proxy.url(), do one operation, then:
//! for exchange in proxy.take() {
//!     println!("{} {} -> {}", exchange.method, exchange.target, exchange.status);
//! }
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// One HTTP/1.1 request and its answer, as they went through a [`RecordingProxy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// `GET`, `PUT`, `POST`, `HEAD`…
    pub method: String,
    /// The request target (path and query), percent-decoded.
    pub target: String,
    /// The request's `Range` header (or Azure's `x-ms-range`).
    pub range: Option<String>,
    /// The request's `If-None-Match` header (`*`: create-only).
    pub if_none_match: Option<String>,
    /// The first KiB of the request body, lossily decoded (GCS names the object in its upload
    /// body).
    pub body_head: String,
    /// The final status of the answer (`100 Continue` skipped).
    pub status: u16,
    /// The answer's `Content-Range` header.
    pub content_range: Option<String>,
    /// The answer body's length in bytes.
    pub body_len: usize,
}

impl Exchange {
    /// An upload (`PUT`, or `POST` as GCS uploads).
    pub fn is_write(&self) -> bool {
        self.method == "PUT" || self.method == "POST"
    }

    /// Whether the target or the body names a bundle blob key (`.blobs/sha256/`).
    pub fn names_blob(&self) -> bool {
        self.mentions(".blobs/sha256/")
    }

    /// Whether the target or the body mentions `text`.
    pub fn mentions(&self, text: &str) -> bool {
        self.target.contains(text) || self.body_head.contains(text)
    }
}

/// What one connection carried: the bytes each way, and where each request-side chunk began
/// with the global order it arrived in.
#[derive(Default)]
struct Record {
    up: Vec<u8>,
    down: Vec<u8>,
    marks: Vec<(usize, u64)>,
}

type Shared = Arc<Mutex<Record>>;

/// A running proxy; stops when dropped.
pub struct RecordingProxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Shared>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Orders request chunks across connections.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl RecordingProxy {
    /// Starts a proxy on 127.0.0.1 in front of `upstream`.
    ///
    /// Panics if no port can be bound (a test setup failure).
    pub async fn start(upstream: SocketAddr) -> RecordingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let conns: Arc<Mutex<Vec<Shared>>> = Default::default();
        let all = conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let record: Shared = Default::default();
                all.lock().unwrap().push(record.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    // Each direction is recorded before it is forwarded, so whatever a client
                    // has received is in the record.
                    tokio::join!(
                        pump(cr, sw, record.clone(), true),
                        pump(sr, cw, record, false)
                    );
                });
            }
        });
        RecordingProxy { addr, conns, task }
    }

    /// Starts a proxy in front of `http://host:port` (a server's base URL).
    ///
    /// Panics if the URL has no `host:port` this machine resolves.
    pub async fn start_url(upstream: &str) -> RecordingProxy {
        let authority = upstream
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let addr = tokio::net::lookup_host(&authority)
            .await
            .ok()
            .and_then(|mut a| a.find(SocketAddr::is_ipv4))
            .unwrap_or_else(|| panic!("cannot resolve {upstream}"));
        RecordingProxy::start(addr).await
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forgets what was recorded (call it between operations, with nothing in flight).
    pub fn clear(&self) {
        for c in self.conns.lock().unwrap().iter() {
            *c.lock().unwrap() = Record::default();
        }
    }

    /// The exchanges recorded since the last [`RecordingProxy::clear`], in the order their
    /// requests were sent.
    ///
    /// Panics if a record does not parse as HTTP/1.1 (call it with nothing in flight).
    pub fn exchanges(&self) -> Vec<Exchange> {
        let mut out: Vec<(u64, Exchange)> = Vec::new();
        for c in self.conns.lock().unwrap().iter() {
            out.extend(parse_connection(&c.lock().unwrap()));
        }
        out.sort_by_key(|(seq, _)| *seq);
        out.into_iter().map(|(_, e)| e).collect()
    }

    /// [`RecordingProxy::exchanges`], then [`RecordingProxy::clear`].
    pub fn take(&self) -> Vec<Exchange> {
        let exchanges = self.exchanges();
        self.clear();
        exchanges
    }
}

/// Copies `from` to `to` until either ends, appending every chunk to the record first.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, record: Shared, request: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        {
            let mut r = record.lock().unwrap();
            if request {
                let at = r.up.len();
                r.marks.push((at, SEQUENCE.fetch_add(1, Ordering::SeqCst)));
                r.up.extend_from_slice(&buf[..n]);
            } else {
                r.down.extend_from_slice(&buf[..n]);
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Header names (lowercased) and values.
type Headers = Vec<(String, String)>;

/// Splits an HTTP/1.1 message head off `bytes`: (first line, headers, the rest).
fn head(bytes: &[u8]) -> Option<(String, Headers, &[u8])> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next()?.to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((first, headers, &bytes[end + 4..]))
}

fn header(headers: &Headers, name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// Splits a message body off `bytes` by its framing: (body, the rest). `None` for "until the
/// connection closes" (the caller takes everything).
fn body<'a>(headers: &Headers, bytes: &'a [u8]) -> Option<(Vec<u8>, &'a [u8])> {
    if header(headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let (mut out, mut rest) = (Vec::new(), bytes);
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_text = String::from_utf8_lossy(&rest[..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                // Trailers, if any, end with an empty line.
                let end = rest.windows(2).position(|w| w == b"\r\n")?;
                return Some((out, &rest[end + 2..]));
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
    }
    let len: usize = match header(headers, "content-length") {
        Some(n) => n.parse().ok()?,
        None => return None,
    };
    Some((bytes.get(..len)?.to_vec(), &bytes[len..]))
}

/// The exchanges of one connection, each with the order its request was sent in.
fn parse_connection(r: &Record) -> Vec<(u64, Exchange)> {
    let (mut up, mut down) = (&r.up[..], &r.down[..]);
    let mut out = Vec::new();
    while let Some((request_line, headers, rest)) = head(up) {
        let start = r.up.len() - up.len();
        let seq = r
            .marks
            .iter()
            .rev()
            .find(|(at, _)| *at <= start)
            .map_or(0, |(_, s)| *s);
        let (request_body, rest) = body(&headers, rest).unwrap_or((Vec::new(), rest));
        up = rest;
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default();
        // The final answer, after any `100 Continue`.
        let (status, answer_headers, after) = loop {
            let (status_line, answer_headers, after) =
                head(down).expect("an answer to every request (nothing in flight)");
            let status: u16 = status_line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("a status code");
            if (100..200).contains(&status) {
                down = after;
                continue;
            }
            break (status, answer_headers, after);
        };
        let body_len = if method == "HEAD" || status == 204 || status == 304 {
            down = after;
            0
        } else {
            match body(&answer_headers, after) {
                Some((b, rest)) => {
                    down = rest;
                    b.len()
                }
                None => {
                    down = &after[after.len()..];
                    after.len()
                }
            }
        };
        out.push((
            seq,
            Exchange {
                method,
                target: percent_encoding::percent_decode_str(target)
                    .decode_utf8_lossy()
                    .into_owned(),
                range: header(&headers, "range").or_else(|| header(&headers, "x-ms-range")),
                if_none_match: header(&headers, "if-none-match"),
                body_head: String::from_utf8_lossy(&request_body[..request_body.len().min(1024)])
                    .into_owned(),
                status,
                content_range: header(&answer_headers, "content-range"),
                body_len,
            },
        ));
    }
    assert!(
        up.is_empty() && down.is_empty(),
        "unparsed bytes in a recorded connection"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_continue_answers_and_order_are_read_back() {
        let mut r = Record::default();
        r.marks.push((0, 7));
        r.up.extend_from_slice(
            b"PUT /b/.blobs/sha256/ab%2Fc HTTP/1.1\r\nexpect: 100-continue\r\nIf-None-Match: *\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        );
        let second = r.up.len();
        r.marks.push((second, 9));
        r.up.extend_from_slice(b"GET /b/x HTTP/1.1\r\nRange: bytes=1-2\r\n\r\n");
        r.down.extend_from_slice(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        );
        r.down.extend_from_slice(
            b"HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 1-2/5\r\ntransfer-encoding: chunked\r\n\r\n2\r\nbc\r\n0\r\n\r\n",
        );
        let got = parse_connection(&r);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 7);
        assert_eq!(got[0].1.target, "/b/.blobs/sha256/ab/c");
        assert_eq!(got[0].1.body_head, "abc");
        assert_eq!(got[0].1.if_none_match.as_deref(), Some("*"));
        assert_eq!(got[1].1.if_none_match, None);
        assert_eq!((got[0].1.status, got[0].1.body_len), (200, 0));
        assert!(got[0].1.is_write() && got[0].1.names_blob());
        assert_eq!(got[1].0, 9);
        assert_eq!(got[1].1.range.as_deref(), Some("bytes=1-2"));
        assert_eq!((got[1].1.status, got[1].1.body_len), (206, 2));
        assert_eq!(got[1].1.content_range.as_deref(), Some("bytes 1-2/5"));
    }
}
