//! The serialized-flow envelope: flowstore's answer to Prefect's pickle.
//!
//! A stored serialized flow is one self-describing byte string:
//!
//! ```text
//! flowstore-envelope/1 sha256:<hex of SHA-256(header line + payload)>\n
//! {"format":1,"flow":"My ETL Flow","codec":"json","length":42,"versions":{…}}\n
//! <payload: `length` bytes>
//! ```
//!
//! The header records the envelope format, the flow's name, the codec, the payload's length and
//! the versions of flowstore and of the application that wrote it; the first line carries a
//! SHA-256 over the header line and the payload, so no byte of either can change unnoticed.
//! [`Envelope::open`] checks all of it before anything is decoded: a digest mismatch, a flow
//! stored under another flow's name, an unknown codec or a truncated object is refused with
//! [`Error::FlowCorrupt`].
//! A decode that fails lists every version that differs between writer and reader.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result, VersionDiff};

pub(crate) mod sealed;

pub use sealed::{seal_file, SealedFlow, SealedReader, IN_MEMORY_LIMIT};

/// The first line of every envelope.
pub const MAGIC: &[u8] = b"flowstore-envelope/";
/// The envelope format this version of flowstore writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The largest header flowstore accepts (a header is a few hundred bytes; this bounds hostile input).
pub const MAX_HEADER_LEN: usize = 64 * 1024;
/// The version of flowstore-core, recorded in every envelope as `flowstore`.
pub const FLOWSTORE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The application writing or reading flows: its name and version go into the envelope so a
/// failed decode can say which versions differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    /// The application's name (e.g. its crate name).
    pub name: String,
    /// The application's version.
    pub version: String,
}

impl AppInfo {
    /// An application identity.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        AppInfo {
            name: name.into(),
            version: version.into(),
        }
    }
}

/// The calling crate's [`AppInfo`], from its `CARGO_PKG_NAME` and `CARGO_PKG_VERSION`.
///
/// ```
/// let app = flowstore_core::app_info!();
/// assert!(!app.version.is_empty());
/// ```
#[macro_export]
macro_rules! app_info {
    () => {
        $crate::envelope::AppInfo::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    };
}

/// How an envelope's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `serde_json` of the user's flow value.
    Json,
    /// Opaque bytes (a file registered from the CLI, or bytes the application encodes itself).
    Raw,
}

impl Codec {
    /// The codec's name as written in the header.
    pub fn as_str(&self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Raw => "raw",
        }
    }
}

/// The header line of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeHeader {
    /// Envelope format version ([`FORMAT_VERSION`]).
    pub format: u32,
    /// The flow's name.
    pub flow: String,
    /// The codec's name (`json`, `raw`).
    pub codec: String,
    /// The payload's length in bytes.
    pub length: u64,
    /// Versions of the writer: `flowstore` and the application's name.
    pub versions: BTreeMap<String, String>,
}

/// `sha256:<hex>` of `bytes`: the digest format used in storage references.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An incremental `sha256:<hex>` digest, for backends that stream what they store.
#[derive(Debug, Clone, Default)]
pub struct DigestBuilder(Sha256);

impl DigestBuilder {
    /// A new, empty digest.
    pub fn new() -> Self {
        Self::default()
    }
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// The `sha256:<hex>` digest of everything fed.
    pub fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.0.finalize()))
    }
}

/// Seals a flow value with the JSON codec.
///
/// Errors with [`Error::Config`] if the value cannot be serialized (e.g. a map with non-string keys).
///
/// ```
/// use flowstore_core::envelope::{seal, Envelope};
/// let app = flowstore_core::app_info!();
/// let sealed = seal("My ETL Flow", &vec!["extract", "load"], &app).unwrap();
/// let env = Envelope::open("My ETL Flow", "memory", sealed.to_bytes().unwrap()).unwrap();
/// let tasks: Vec<String> = env.decode(&app).unwrap();
/// assert_eq!(tasks, ["extract", "load"]);
/// ```
pub fn seal<T: Serialize + ?Sized>(name: &str, value: &T, app: &AppInfo) -> Result<SealedFlow> {
    let payload = serde_json::to_vec(value).map_err(|e| {
        Error::config(format!(
            "Flow \"{name}\" could not be serialized with the json codec: {e}"
        ))
    })?;
    Ok(seal_payload(name, Codec::Json, &payload, app))
}

/// Seals opaque bytes with the `raw` codec (what `flowstore register FILE` stores).
pub fn seal_bytes(name: &str, payload: &[u8], app: &AppInfo) -> SealedFlow {
    seal_payload(name, Codec::Raw, payload, app)
}

/// The header line of an envelope holding `length` payload bytes.
fn header_line(name: &str, codec: Codec, length: u64, app: &AppInfo) -> Vec<u8> {
    let mut versions = BTreeMap::new();
    versions.insert("flowstore".to_string(), FLOWSTORE_VERSION.to_string());
    versions.insert(app.name.clone(), app.version.clone());
    let header = EnvelopeHeader {
        format: FORMAT_VERSION,
        flow: name.to_string(),
        codec: codec.as_str().to_string(),
        length,
        versions,
    };
    let mut line = serde_json::to_vec(&header).expect("an envelope header always serializes");
    line.push(b'\n');
    line
}

/// The line after the magic: format version and the SHA-256 of header line + payload.
fn digest_line(header_line: &[u8], payload: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(header_line);
    hasher.update(payload);
    first_line(hasher)
}

/// The line after the magic, from a hasher fed the header line and the payload.
fn first_line(inner: Sha256) -> String {
    format!(
        "{FORMAT_VERSION} sha256:{}\n",
        hex::encode(inner.finalize())
    )
}

/// Seals an already-encoded payload under the given codec.
pub fn seal_payload(name: &str, codec: Codec, payload: &[u8], app: &AppInfo) -> SealedFlow {
    let header_line = header_line(name, codec, payload.len() as u64, app);
    let first_line = digest_line(&header_line, payload);
    let mut bytes =
        Vec::with_capacity(MAGIC.len() + first_line.len() + header_line.len() + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(first_line.as_bytes());
    bytes.extend_from_slice(&header_line);
    bytes.extend_from_slice(payload);
    SealedFlow::from_envelope(name, Bytes::from(bytes))
}

/// True if `bytes` start like a flowstore envelope.
pub fn is_envelope(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// An envelope whose header and digest have been checked.
#[derive(Clone)]
pub struct Envelope {
    header: EnvelopeHeader,
    payload: Bytes,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl Envelope {
    /// Parses and verifies envelope bytes stored for `flow` at `location`.
    ///
    /// Errors with [`Error::FlowCorrupt`] (naming flow and location) when the magic line, the
    /// header, the length or the SHA-256 are wrong, when the envelope holds a different flow, or
    /// when its format is newer than this flowstore reads.
    pub fn open(flow: &str, location: &str, bytes: Bytes) -> Result<Envelope> {
        // One verifier for whole and streamed envelopes: feed the bytes as a single chunk.
        let mut check = StreamCheck::with_whole_digest(flow, location, false);
        check.update(&bytes)?;
        let header = check.finish()?.header;
        let payload_start = bytes.len() - header.length as usize;
        Ok(Envelope {
            header,
            payload: bytes.slice(payload_start..),
        })
    }

    /// Opens envelope bytes whose SHA-256 the caller already matched against the digest
    /// recorded at registration (an envelope that was whole and valid then): checks the header
    /// (format, codec, flow name) and the payload's length, but not the envelope's own digest,
    /// which can only agree. Saves one pass over the bytes on every verified fetch.
    ///
    /// Errors as [`Envelope::open`] does for the header, name and length.
    pub(crate) fn open_digest_checked(
        flow: &str,
        location: &str,
        bytes: Bytes,
    ) -> Result<Envelope> {
        let corrupt = |reason: String| Error::FlowCorrupt {
            flow: flow.to_string(),
            location: location.to_string(),
            reason,
        };
        let (header, _, _, payload_start) = parse_header(&bytes).map_err(corrupt)?;
        check_header(&header).map_err(corrupt)?;
        check_length(&header, (bytes.len() - payload_start) as u64).map_err(corrupt)?;
        check_flow(&header, flow).map_err(corrupt)?;
        Ok(Envelope {
            header,
            payload: bytes.slice(payload_start..),
        })
    }

    /// The verified header.
    pub fn header(&self) -> &EnvelopeHeader {
        &self.header
    }

    /// The verified payload bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Decodes the payload into the application's flow type.
    ///
    /// Errors with [`Error::Decode`] listing every version that differs between the writer and
    /// `app` when the codec is unknown or decoding fails. A successful decode across different
    /// versions only logs a warning.
    pub fn decode<T: DeserializeOwned>(&self, app: &AppInfo) -> Result<T> {
        let diffs = self.version_diffs(app);
        let result = match self.header.codec.as_str() {
            "json" => serde_json::from_slice(&self.payload).map_err(|e| e.to_string()),
            "raw" => serde_json::from_value(serde_json::Value::String(
                String::from_utf8_lossy(&self.payload).into_owned(),
            ))
            .map_err(|e| format!("a raw-codec payload decodes only as a string or bytes: {e}")),
            other => Err(format!(
                "unknown codec \"{other}\" (flowstore {FLOWSTORE_VERSION} knows json and raw)"
            )),
        };
        match result {
            Ok(v) => {
                if !diffs.is_empty() {
                    tracing::warn!(
                        flow = %self.header.flow,
                        "flow was built with different versions than are running: {}",
                        diffs.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" ")
                    );
                }
                Ok(v)
            }
            Err(reason) => Err(Error::Decode {
                flow: self.header.flow.clone(),
                reason,
                versions: diffs,
            }),
        }
    }

    /// Every version that differs between the writer recorded in the header and `app` + this flowstore.
    pub fn version_diffs(&self, app: &AppInfo) -> Vec<VersionDiff> {
        let mut running = BTreeMap::new();
        running.insert("flowstore".to_string(), FLOWSTORE_VERSION.to_string());
        running.insert(app.name.clone(), app.version.clone());
        let mut diffs = Vec::new();
        let names: std::collections::BTreeSet<&String> =
            self.header.versions.keys().chain(running.keys()).collect();
        for name in names {
            let built = self.header.versions.get(name);
            let run = running.get(name);
            if built != run {
                diffs.push(VersionDiff {
                    component: name.clone(),
                    built_with: built.cloned(),
                    running_with: run.cloned(),
                });
            }
        }
        diffs
    }
}

/// What a header must say for this flowstore to read the envelope: a format it reads and a codec
/// it knows. The error is the reason shown in [`Error::FlowCorrupt`].
fn check_header(header: &EnvelopeHeader) -> std::result::Result<(), String> {
    if header.format != FORMAT_VERSION {
        return Err(format!(
            "envelope format {} is not supported by flowstore {FLOWSTORE_VERSION}, which reads format {FORMAT_VERSION}; fetch it with a newer flowstore",
            header.format
        ));
    }
    if ![Codec::Json, Codec::Raw]
        .iter()
        .any(|c| c.as_str() == header.codec)
    {
        return Err(format!(
            "unknown codec \"{}\" (flowstore {FLOWSTORE_VERSION} knows json and raw)",
            header.codec
        ));
    }
    Ok(())
}

/// The payload must be exactly as long as the header records.
fn check_length(header: &EnvelopeHeader, payload: u64) -> std::result::Result<(), String> {
    if payload == header.length {
        return Ok(());
    }
    Err(format!(
        "payload is {payload} bytes but the envelope records {} (truncated or padded)",
        header.length
    ))
}

/// The envelope must hold the flow it was fetched as.
fn check_flow(header: &EnvelopeHeader, flow: &str) -> std::result::Result<(), String> {
    if header.flow == flow {
        return Ok(());
    }
    Err(format!(
        "the envelope holds flow \"{}\", not \"{flow}\"",
        header.flow
    ))
}

/// Parses the first line and header; returns the header, the recorded hex digest, and the
/// offsets of the header line and of the payload.
fn parse_header(
    bytes: &[u8],
) -> std::result::Result<(EnvelopeHeader, String, usize, usize), String> {
    if !bytes.starts_with(MAGIC) {
        return Err("it is not a flowstore envelope (no `flowstore-envelope/` line)".to_string());
    }
    let window = &bytes[..bytes.len().min(MAX_HEADER_LEN)];
    let first_nl = window
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("the envelope's first line is unterminated")?;
    let first = std::str::from_utf8(&window[MAGIC.len()..first_nl])
        .map_err(|_| "the envelope's first line is not text")?;
    let (declared, recorded) = first
        .split_once(" sha256:")
        .ok_or("the envelope's first line has no sha256 digest")?;
    let declared: u32 = declared
        .parse()
        .map_err(|_| "the envelope's first line has no format number")?;
    if recorded.len() != 64
        || !recorded
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err("the envelope's digest is not 64 lowercase hex digits".to_string());
    }
    let rest = &window[first_nl + 1..];
    let second_nl = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("the envelope header is unterminated or longer than 64 KiB")?;
    let header: EnvelopeHeader = serde_json::from_slice(&rest[..second_nl])
        .map_err(|e| format!("the envelope header is not valid: {e}"))?;
    if header.format != declared {
        return Err(format!(
            "the envelope declares format {declared} on its first line but {} in its header",
            header.format
        ));
    }
    Ok((
        header,
        recorded.to_string(),
        first_nl + 1,
        first_nl + 1 + second_nl + 1,
    ))
}

/// Verifies an envelope that arrives in chunks (a download streamed to disk), without holding it
/// in memory: feed every chunk to [`StreamCheck::update`], then [`StreamCheck::finish`].
///
/// ```
/// use flowstore_core::envelope::{seal_bytes, AppInfo, StreamCheck};
/// let sealed = seal_bytes("f", &vec![7u8; 100_000], &AppInfo::new("app", "1"));
/// let mut check = StreamCheck::new("f", "somewhere");
/// for chunk in sealed.to_bytes().unwrap().chunks(4096) {
///     check.update(chunk).unwrap();
/// }
/// let verified = check.finish().unwrap();
/// assert_eq!(verified.digest, sealed.digest());
/// assert_eq!(verified.header.length, 100_000);
/// ```
#[derive(Debug)]
pub struct StreamCheck {
    flow: String,
    location: String,
    head: Vec<u8>,
    parsed: Option<(EnvelopeHeader, String)>,
    envelope_hasher: Sha256,
    whole: Option<Sha256>,
    total: u64,
    payload: u64,
}

/// What [`StreamCheck::finish`] verified.
#[derive(Debug, Clone)]
pub struct StreamVerified {
    /// The envelope header.
    pub header: EnvelopeHeader,
    /// `sha256:<hex>` of every byte fed (compare with the reference's digest); empty when the
    /// check was made without it ([`Envelope::open`]).
    pub digest: String,
    /// How many bytes were fed.
    pub size: u64,
}

impl StreamCheck {
    /// A check for the envelope of `flow` read from `location` (both named in errors).
    pub fn new(flow: &str, location: &str) -> Self {
        Self::with_whole_digest(flow, location, true)
    }

    fn with_whole_digest(flow: &str, location: &str, whole: bool) -> Self {
        StreamCheck {
            flow: flow.to_string(),
            location: location.to_string(),
            head: Vec::new(),
            parsed: None,
            envelope_hasher: Sha256::new(),
            whole: whole.then(Sha256::new),
            total: 0,
            payload: 0,
        }
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::FlowCorrupt {
            flow: self.flow.clone(),
            location: self.location.clone(),
            reason,
        }
    }

    /// Feeds the next chunk and returns the part of it that is payload (empty while the header is
    /// still arriving), so a caller can write just the payload out. Errors with
    /// [`Error::FlowCorrupt`] as soon as the header is known to be wrong, or the payload grows past
    /// its recorded length.
    pub fn update<'c>(&mut self, chunk: &'c [u8]) -> Result<&'c [u8]> {
        if let Some(whole) = &mut self.whole {
            whole.update(chunk);
        }
        self.total += chunk.len() as u64;
        let mut payload_part = chunk;
        if self.parsed.is_some() {
            self.envelope_hasher.update(chunk);
            self.payload += chunk.len() as u64;
        } else {
            let before = self.head.len();
            self.head.extend_from_slice(chunk);
            let newlines = self.head.iter().filter(|&&b| b == b'\n').take(2).count();
            if newlines < 2 {
                if self.head.len() > MAX_HEADER_LEN + 128
                    || !MAGIC.starts_with(&self.head[..self.head.len().min(MAGIC.len())])
                {
                    return Err(self.corrupt(
                        "it is not a flowstore envelope (no `flowstore-envelope/` line)"
                            .to_string(),
                    ));
                }
                return Ok(&[]);
            }
            let (header, recorded, header_start, payload_start) =
                parse_header(&self.head).map_err(|r| self.corrupt(r))?;
            check_header(&header).map_err(|r| self.corrupt(r))?;
            self.envelope_hasher.update(&self.head[header_start..]);
            self.payload = (self.head.len() - payload_start) as u64;
            payload_part = &chunk[payload_start.saturating_sub(before).min(chunk.len())..];
            self.parsed = Some((header, recorded));
            self.head = Vec::new();
        }
        if let Some((header, _)) = &self.parsed {
            if self.payload > header.length {
                let reason = format!(
                    "payload is longer than the {} bytes the envelope records",
                    header.length
                );
                return Err(self.corrupt(reason));
            }
        }
        Ok(payload_part)
    }

    /// Checks length, digest and flow name once every chunk was fed.
    pub fn finish(self) -> Result<StreamVerified> {
        let Some((header, recorded)) = self.parsed.clone() else {
            return Err(self.corrupt("the envelope header is missing or truncated".to_string()));
        };
        check_length(&header, self.payload).map_err(|r| self.corrupt(r))?;
        let actual = hex::encode(self.envelope_hasher.clone().finalize());
        if actual != recorded {
            return Err(self.corrupt(format!(
                "its SHA-256 is {actual} but the envelope records {recorded}"
            )));
        }
        check_flow(&header, &self.flow).map_err(|r| self.corrupt(r))?;
        Ok(StreamVerified {
            header,
            digest: self
                .whole
                .map(|w| format!("sha256:{}", hex::encode(w.finalize())))
                .unwrap_or_default(),
            size: self.total,
        })
    }
}

/// Reads just the header of envelope bytes (for listings), without verifying the payload.
pub fn peek_header(bytes: &[u8]) -> Option<EnvelopeHeader> {
    parse_header(bytes).ok().map(|(h, ..)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppInfo {
        AppInfo::new("my-app", "1.0.0")
    }

    #[test]
    fn round_trip_json() {
        let sealed = seal("f", &serde_json::json!({"tasks": [1, 2]}), &app()).unwrap();
        let env = Envelope::open("f", "loc", sealed.to_bytes().unwrap()).unwrap();
        assert_eq!(env.header().codec, "json");
        assert_eq!(env.header().versions["my-app"], "1.0.0");
        let v: serde_json::Value = env.decode(&app()).unwrap();
        assert_eq!(v["tasks"][1], 2);
    }

    #[test]
    fn seal_file_is_seal_bytes_of_the_contents() {
        let dir = std::env::temp_dir().join(format!("flowstore-seal-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (i, contents) in [&b""[..], b"x", &[7u8; 100_000][..]].iter().enumerate() {
            let path = dir.join(format!("f{i}"));
            std::fs::write(&path, contents).unwrap();
            let from_file = seal_file("F", &path, &app()).unwrap();
            assert_eq!(
                from_file.to_bytes().unwrap(),
                seal_bytes("F", contents, &app()).to_bytes().unwrap()
            );
            let env = Envelope::open("F", "loc", from_file.to_bytes().unwrap()).unwrap();
            assert_eq!(env.payload().as_ref(), *contents);
        }
        let missing = seal_file("F", &dir.join("missing"), &app()).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_flipped_byte_is_refused() {
        let sealed = seal_bytes("f", b"hello world", &app());
        for i in 0..sealed.to_bytes().unwrap().len() {
            let mut b = sealed.to_bytes().unwrap().to_vec();
            b[i] ^= 0x01;
            let err = Envelope::open("f", "loc", Bytes::from(b));
            assert!(err.is_err(), "flip at byte {i} was accepted");
        }
    }

    #[test]
    fn truncation_and_swap_are_refused() {
        let sealed = seal_bytes("f", b"hello world", &app());
        let short = sealed
            .to_bytes()
            .unwrap()
            .slice(..sealed.to_bytes().unwrap().len() - 1);
        let e = Envelope::open("f", "loc", short).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let other = seal_bytes("g", b"hello world", &app());
        let e = Envelope::open("f", "loc", other.to_bytes().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds flow \"g\""), "{e}");
        assert!(e.contains("Flow \"f\" at loc"), "{e}");
    }

    #[test]
    fn newer_format_is_refused_clearly() {
        let sealed = seal_bytes("f", b"x", &app());
        let text = String::from_utf8(sealed.to_bytes().unwrap().to_vec()).unwrap();
        let text = text.replacen("envelope/1", "envelope/2", 1).replacen(
            "\"format\":1",
            "\"format\":2",
            1,
        );
        // Re-digest so only the format number is wrong.
        let (first, rest) = text.split_once('\n').unwrap();
        let digest = hex::encode(Sha256::digest(rest.as_bytes()));
        let text = format!(
            "{} sha256:{digest}\n{rest}",
            first.split(' ').next().unwrap()
        );
        let e = Envelope::open("f", "loc", Bytes::from(text))
            .unwrap_err()
            .to_string();
        assert!(e.contains("format 2 is not supported"), "{e}");
    }

    #[test]
    fn failed_decode_lists_version_differences() {
        let sealed = seal("f", &"just a string", &AppInfo::new("my-app", "0.9.0")).unwrap();
        let env = Envelope::open("f", "loc", sealed.to_bytes().unwrap()).unwrap();
        let err = env.decode::<Vec<u32>>(&app()).unwrap_err().to_string();
        assert!(
            err.contains("- my-app: (flow built with \"0.9.0\", currently running with \"1.0.0\")"),
            "{err}"
        );
    }

    #[test]
    fn stream_check_agrees_with_open() {
        let sealed = seal_bytes("f", &[5u8; 10_000], &app());
        for chunk in [1usize, 7, 100, 4096, 20_000] {
            let mut c = StreamCheck::new("f", "loc");
            let mut payload = Vec::new();
            for part in sealed.to_bytes().unwrap().chunks(chunk) {
                payload.extend_from_slice(c.update(part).unwrap());
            }
            assert_eq!(payload, vec![5u8; 10_000], "chunk size {chunk}");
            assert_eq!(c.finish().unwrap().digest, sealed.digest());
        }
        for i in [0usize, 30, 100, sealed.to_bytes().unwrap().len() - 1] {
            let mut b = sealed.to_bytes().unwrap().to_vec();
            b[i] ^= 1;
            let mut c = StreamCheck::new("f", "loc");
            let r = b
                .chunks(64)
                .try_for_each(|p| c.update(p).map(|_| ()))
                .and_then(|_| c.finish().map(|_| ()));
            assert!(r.is_err(), "flip at {i} accepted");
        }
        let mut c = StreamCheck::new("f", "loc");
        c.update(&sealed.to_bytes().unwrap()[..sealed.to_bytes().unwrap().len() - 3])
            .unwrap();
        assert!(c.finish().unwrap_err().to_string().contains("truncated"));
        let mut c = StreamCheck::new("g", "loc");
        c.update(&sealed.to_bytes().unwrap()).unwrap();
        assert!(c.finish().unwrap_err().to_string().contains("holds flow"));
    }

    #[test]
    fn garbage_is_refused_not_panicking() {
        for input in [
            &b""[..],
            b"flowstore-envelope/",
            b"flowstore-envelope/1\n{",
            b"\x80\x04",
        ] {
            assert!(Envelope::open("f", "loc", Bytes::copy_from_slice(input)).is_err());
        }
    }

    #[test]
    fn whole_and_streamed_envelopes_are_refused_in_the_same_words() {
        let sealed = seal_bytes("f", b"payload", &app());
        let text = String::from_utf8(sealed.to_bytes().unwrap().to_vec()).unwrap();
        let unknown_codec = text.replacen("\"codec\":\"raw\"", "\"codec\":\"zst\"", 1);
        assert_ne!(unknown_codec, text, "the test must change the codec");
        let newer_format = text.replacen("\"format\":1", "\"format\":9", 1).replacen(
            "flowstore-envelope/1 ",
            "flowstore-envelope/9 ",
            1,
        );
        for (what, bytes) in [("codec", unknown_codec), ("format", newer_format)] {
            let whole = Envelope::open("f", "loc", Bytes::from(bytes.clone()))
                .unwrap_err()
                .to_string();
            let mut check = StreamCheck::new("f", "loc");
            let streamed = check
                .update(bytes.as_bytes())
                .err()
                .or_else(|| check.finish().err())
                .expect("the streamed check refuses it too")
                .to_string();
            assert_eq!(whole, streamed, "{what}");
            assert!(
                whole.contains(if what == "codec" {
                    "unknown codec \"zst\""
                } else {
                    "format 9"
                }),
                "{whole}"
            );
        }
    }
}
