//! A recording HTTP/1.1 proxy for the tests that count requests: storages built against its
//! address send every request through it to the real server, and it remembers each request's
//! method, target, `Range` header and first bytes of body, and the answer's status and length.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request that went through the proxy.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `PUT`, `POST`, `HEAD`…
    pub method: String,
    /// The request target (path and query), percent-decoded.
    pub target: String,
    /// The first bytes of the body, lossily decoded (GCS names the object in its upload body).
    pub body_head: String,
    /// The `Range` (or Azure's `x-ms-range`) header, if the request had one.
    pub range: Option<String>,
    /// The status the server answered with.
    pub status: u16,
    /// How many body bytes the server answered with.
    pub response_len: usize,
}

impl Seen {
    /// An upload (S3 and Azure `PUT`, GCS `POST` to the upload endpoint).
    pub fn is_write(&self) -> bool {
        self.method == "PUT" || self.method == "POST"
    }

    /// Whether the target or the body names a bundle blob key.
    pub fn names_blob(&self) -> bool {
        self.target.contains(".blobs/sha256/") || self.body_head.contains(".blobs/sha256/")
    }

    /// Whether the target or the body mentions `text`.
    pub fn mentions(&self, text: &str) -> bool {
        self.target.contains(text) || self.body_head.contains(text)
    }
}

/// A proxy on 127.0.0.1 forwarding to `upstream` (`http://host:port`); it runs until the test's
/// runtime ends.
pub struct Proxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    /// Starts a proxy in front of `upstream`.
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let (upstream, log) = (upstream.trim_end_matches('/').to_string(), seen.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (client, upstream, log) = (client.clone(), upstream.clone(), log.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve(conn, &client, &upstream, &log).await {
                        eprintln!("proxy connection ended: {e}");
                    }
                });
            }
        });
        Proxy { url, seen }
    }

    /// Every request so far, and forgets them.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Serves one client connection (keep-alive: many requests).
async fn serve(
    conn: TcpStream,
    client: &reqwest::Client,
    upstream: &str,
    log: &Mutex<Vec<Seen>>,
) -> BoxResult<()> {
    let (read, mut write) = conn.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = match (parts.next(), parts.next()) {
            (Some(m), Some(t)) => (m.to_string(), t.to_string()),
            _ => return Err(format!("bad request line {line:?}").into()),
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        loop {
            let mut h = String::new();
            read.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
            write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let mut body = Vec::new();
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                read.read_line(&mut size).await?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)?;
                let mut chunk = vec![0u8; n + 2];
                read.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = header("content-length") {
            body = vec![0u8; n.parse()?];
            read.read_exact(&mut body).await?;
        }
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mut seen = Seen {
            method: method.clone(),
            target: percent_decode(&target),
            body_head: String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned(),
            range: header("range").or(header("x-ms-range")).map(str::to_string),
            status: 0,
            response_len: 0,
        };

        let mut request = client.request(method.parse()?, format!("{upstream}{target}"));
        for (k, v) in &headers {
            if !HOP_BY_HOP.contains(&k.as_str()) {
                request = request.header(k, v);
            }
        }
        if !body.is_empty() || header("content-length").is_some() {
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let passed_length = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        for (k, v) in response.headers() {
            let k = k.as_str();
            if !HOP_BY_HOP.contains(&k) && k != "content-length" {
                head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
            }
        }
        let bytes = response.bytes().await?;
        seen.status = status.as_u16();
        seen.response_len = bytes.len();
        log.lock().unwrap().push(seen);
        if method == "HEAD" {
            // A HEAD answer carries the object's length and no body.
            if let Some(len) = passed_length {
                head.push_str(&format!("content-length: {len}\r\n"));
            }
        } else if status.as_u16() != 204 && status.as_u16() != 304 {
            head.push_str(&format!("content-length: {}\r\n", bytes.len()));
        }
        head.push_str("\r\n");
        write.write_all(head.as_bytes()).await?;
        if method != "HEAD" {
            write.write_all(&bytes).await?;
        }
        write.flush().await?;
        if close {
            return Ok(());
        }
    }
}

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "expect",
    "te",
    "upgrade",
    "proxy-connection",
];

/// `%2F` → `/` and so on (what the tests look for in listing queries).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
