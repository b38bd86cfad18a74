//! The few blob operations the engine needs, and their implementation on `object_store`
//! (S3, Azure). GCS implements them on its JSON API (see `gcs_json`).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use flowstore_core::envelope::SealedFlow;
use flowstore_core::Error as CoreError;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use crate::completion::CreateOnlyCompletion;
use crate::error::{Failure, Op};

/// Flows, scripts and bundle blobs larger than this are streamed to the service (in parts on S3
/// and Azure, as one streamed request on GCS) and never held in memory whole; smaller ones go up
/// in one create-only request.
pub const MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;

/// The size of one part of a multipart upload (S3, Azure).
///
/// S3 wants parts of at least 5 MiB (but the last) and at most 10,000 of them: 6 MiB parts
/// carry objects up to 58 GiB, a 1 GiB flow in 171 parts. Azure takes blocks up to 4,000 MiB.
/// Four parts are uploaded at once and held until the service has them, so smaller parts keep
/// a register's memory lower: with 8 MiB parts a 1 GiB flow peaked at 64 MiB (S3) and 72 MiB
/// (Azure) resident in `cargo xtask bench`.
pub const PART_SIZE: usize = 6 * 1024 * 1024;

/// How many parts of one multipart upload (S3, Azure) are uploaded at once.
///
/// Each part in flight holds its [`PART_SIZE`] bytes until the service has them, and the next
/// part is read only once one of them is done: 4 × 6 MiB = 24 MiB of buffered parts at most,
/// whatever the object's size, while four requests keep the link busy (one part at a time
/// leaves it idle for a round trip per part).
pub(crate) const PARTS_IN_FLIGHT: usize = 4;

/// The size of the chunks a file is read in (as [`SealedFlow::stream`] reads a sealed flow).
const READ_CHUNK: usize = 1 << 20;

/// What a stored object is.
#[derive(Debug, Clone)]
pub(crate) struct BlobMeta {
    pub key: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    pub etag: Option<String>,
    pub version: Option<String>,
}

/// An object's bytes as they arrive.
pub(crate) type ChunkStream = BoxStream<'static, Result<Bytes, CoreError>>;

/// Why an upload did not happen.
pub(crate) enum PutError {
    /// An object is already there (create-only upload refused).
    Exists,
    /// Anything else, described.
    Other(CoreError),
}

/// What an upload streams: a file on disk (a script, a bundle blob) or a sealed flow (held in
/// memory, or read from its file and checked against its seal as it is read).
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A file, read as it is uploaded.
    File(PathBuf),
    /// A sealed flow; its stream ends in an error if its file changed since it was sealed.
    Sealed(SealedFlow),
}

impl Source {
    /// What reading it is, for errors: `reading /path/flow.py`, `reading flow "ETL"`.
    pub fn reading(&self) -> String {
        match self {
            Source::File(p) => format!("reading {}", p.display()),
            Source::Sealed(s) => format!("reading flow \"{}\"", s.name),
        }
    }

    /// Its length in bytes (a file's, as it is now).
    pub async fn len(&self) -> io::Result<u64> {
        match self {
            Source::File(p) => Ok(tokio::fs::metadata(p).await?.len()),
            Source::Sealed(s) => Ok(s.len()),
        }
    }

    /// Its bytes, in chunks of at most 1 MiB. Opened again for each attempt of an upload. An
    /// error ends the stream: the upload must then be abandoned, never completed.
    pub fn stream(&self) -> BoxStream<'static, io::Result<Bytes>> {
        match self {
            Source::File(p) => file_stream(p.clone()),
            Source::Sealed(s) => s.stream(),
        }
    }

    /// The whole of a small source in memory (a cheap clone for a flow held there). A sealed
    /// flow read from its file is checked against its seal.
    async fn read_all(&self) -> io::Result<Bytes> {
        if let Source::Sealed(s) = self {
            if let Some(b) = s.as_bytes() {
                return Ok(b.clone());
            }
        }
        let mut buf = BytesMut::new();
        let mut stream = self.stream();
        while let Some(chunk) = stream.try_next().await? {
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// The error for a source that could not be read while it was uploaded to `location`: the
    /// upload was abandoned. The io error (which says what to do, e.g. for a flow whose file
    /// changed after it was sealed) is the `source()`.
    pub fn read_error(&self, location: &str, e: io::Error) -> CoreError {
        CoreError::io(
            format!(
                "{} to upload it to {location} (the upload was abandoned: nothing was stored there)",
                self.reading()
            ),
            e,
        )
    }
}

/// A file's bytes in chunks of [`READ_CHUNK`], read as the stream is polled.
fn file_stream(path: PathBuf) -> BoxStream<'static, io::Result<Bytes>> {
    futures::stream::try_unfold((path, None::<tokio::fs::File>), |(path, file)| async move {
        let mut file = match file {
            Some(f) => f,
            None => tokio::fs::File::open(&path).await?,
        };
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        while buf.len() < READ_CHUNK {
            if file.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        if buf.is_empty() {
            return Ok(None);
        }
        Ok(Some((buf.freeze(), (path, Some(file)))))
    })
    .boxed()
}

/// Uploads `source` to `key`, create-only unless `overwrite`: in one request when it is at most
/// [`MULTIPART_THRESHOLD`] bytes (read whole first, so a sealed flow whose file changed is
/// refused before anything is sent), else streamed with [`Blobs::put_stream`]. Scripts, sealed
/// flows and bundle blobs all go up through here.
pub(crate) async fn upload(
    blobs: &dyn Blobs,
    key: &str,
    source: &Source,
    overwrite: bool,
) -> Result<(), PutError> {
    let location = blobs.location(key);
    let len = source
        .len()
        .await
        .map_err(|e| PutError::Other(source.read_error(&location, e)))?;
    if len <= MULTIPART_THRESHOLD {
        let bytes = source
            .read_all()
            .await
            .map_err(|e| PutError::Other(source.read_error(&location, e)))?;
        return blobs.put(key, bytes, overwrite).await;
    }
    blobs.put_stream(key, source, len, overwrite).await
}

/// Blob operations on one bucket or container.
///
/// # Create-only uploads
///
/// [`Blobs::put`] is create-only on every service, in the request itself: `If-None-Match: *`
/// (S3, Azure) or `ifGenerationMatch=0` (GCS). So is [`Blobs::put_stream`], in the request that
/// makes the object appear:
///
/// | service | large uploads | create-only by |
/// |---|---|---|
/// | GCS | one streamed `uploadType=multipart` request | `ifGenerationMatch=0` on it |
/// | S3 | multipart upload, [`PARTS_IN_FLIGHT`] parts at once | `If-None-Match: *` on CompleteMultipartUpload |
/// | Azure | blocks, [`PARTS_IN_FLIGHT`] at once, then Put Block List | `If-None-Match: *` on Put Block List |
///
/// `object_store` 0.14 sends no condition with the completing request (S3, Azure), so
/// flowstore sends that one request itself (see `crate::completion`). Two registrations racing
/// for one fixed key therefore store exactly one object, and the other is refused. Only a
/// store without such a completion (the in-memory store of unit tests) checks the key with a
/// HEAD before the upload.
#[flowstore_core::async_trait]
pub(crate) trait Blobs: Send + Sync {
    /// `scheme://bucket/key`, for messages.
    fn location(&self, key: &str) -> String;
    /// Uploads small bytes; create-only unless `overwrite`.
    async fn put(&self, key: &str, bytes: Bytes, overwrite: bool) -> Result<(), PutError>;
    /// Uploads `len` bytes streamed from `source` in constant memory; create-only unless
    /// `overwrite` (see the table above for how): an object already at `key` is
    /// [`PutError::Exists`], and nothing of this upload is stored then. When the source fails
    /// to read (a sealed flow whose file changed after sealing), the upload is abandoned, never
    /// completed, and the error keeps the io error as its source.
    async fn put_stream(
        &self,
        key: &str,
        source: &Source,
        len: u64,
        overwrite: bool,
    ) -> Result<(), PutError>;
    /// The object's metadata and bytes; a missing object or bucket is [`CoreError::NotFound`].
    async fn get(&self, key: &str) -> Result<(BlobMeta, ChunkStream), CoreError>;
    /// True if the object exists (a HEAD, or the JSON API's metadata request). A missing object
    /// is `false`; any other failure is an error naming the key.
    async fn exists(&self, key: &str) -> Result<bool, CoreError>;
    /// `len` bytes of an object from `offset`, in one ranged request (a bundle file out of its
    /// pack). A missing object or bucket is [`CoreError::NotFound`]; an object that ends before
    /// `offset + len` is an error naming the key and the bytes asked for.
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, CoreError>;
    /// The first `n` bytes of an object (for listings), if it can be read.
    async fn head_bytes(&self, key: &str, n: u64) -> Option<Bytes>;
    /// Every object under `prefix`.
    async fn list(&self, prefix: Option<&str>) -> Result<Vec<BlobMeta>, CoreError>;
    /// Deletes the object. One already gone is success; a missing bucket (container) is
    /// [`CoreError::NotFound`] naming it, a refusal [`CoreError::PermissionDenied`] naming the
    /// permission deleting needs.
    async fn delete(&self, key: &str) -> Result<(), CoreError>;
    /// Writes bytes, replacing what is there (tests that alter stored flows).
    async fn replace(&self, key: &str, bytes: Bytes) -> Result<(), CoreError>;
}

/// An `object_store` client with its multipart side, as storages opened alike share it.
#[derive(Clone)]
pub(crate) struct ObjectStoreClient {
    /// Requests on objects.
    pub store: Arc<dyn ObjectStore>,
    /// The same client's multipart uploads.
    pub multipart: Arc<dyn MultipartStore>,
    /// Completes multipart uploads create-only; `None` (only the in-memory store of unit
    /// tests): a HEAD before a create-only upload checks the key instead.
    pub create_only: Option<Arc<dyn CreateOnlyCompletion>>,
}

impl ObjectStoreClient {
    /// An in-memory store (unit tests), create-only multipart uploads guarded by a HEAD.
    #[cfg(test)]
    pub fn in_memory() -> ObjectStoreClient {
        let store = Arc::new(object_store::memory::InMemory::new());
        ObjectStoreClient {
            store: store.clone(),
            multipart: store,
            create_only: None,
        }
    }
}

/// [`Blobs`] on an `object_store` client.
pub(crate) struct ObjectStoreBlobs {
    pub backend: &'static str,
    pub display: String,
    pub client: ObjectStoreClient,
}

impl ObjectStoreBlobs {
    /// Maps a client error for `what` (`uploading to`, `downloading`, …) at `key`.
    fn error(&self, op: Op, what: &str, key: &str, source: object_store::Error) -> CoreError {
        let location = self.url(key);
        Failure {
            backend: self.backend,
            display: &self.display,
            what: format!("{what} {location}"),
            location,
            op,
        }
        .object_store(source)
    }

    fn url(&self, key: &str) -> String {
        if key.is_empty() {
            self.display.clone()
        } else {
            format!("{}/{key}", self.display)
        }
    }

    /// Uploads `source` as the parts of upload `id`: parts of [`PART_SIZE`] (the last one
    /// shorter), at most [`PARTS_IN_FLIGHT`] at once, each on its own task so that parts keep
    /// going up while the next one is read. The parts' ids come back in order. A source that
    /// fails to read stops the upload (the caller aborts it).
    async fn upload_parts(
        &self,
        location: &ObjectPath,
        id: &str,
        source: &Source,
    ) -> Result<Vec<PartId>, PutError> {
        let key = location.as_ref();
        let mut stream = source.stream();
        let mut in_flight: JoinSet<(usize, object_store::Result<PartId>)> = JoinSet::new();
        let mut parts: Vec<Option<PartId>> = Vec::new();
        let mut buffer: Vec<Bytes> = Vec::new();
        let mut buffered = 0;
        loop {
            let chunk = stream
                .try_next()
                .await
                .map_err(|e| PutError::Other(source.read_error(&self.url(key), e)))?;
            let end = chunk.is_none();
            if let Some(chunk) = chunk {
                buffered += chunk.len();
                buffer.push(chunk);
            }
            // A part when one is full, and the rest at the end (an empty one if there was
            // nothing: an upload needs a part).
            if buffered >= PART_SIZE || (end && (buffered > 0 || parts.is_empty())) {
                let payload: PutPayload = std::mem::take(&mut buffer).into_iter().collect();
                buffered = 0;
                let index = parts.len();
                parts.push(None);
                let (multipart, location, id) = (
                    self.client.multipart.clone(),
                    location.clone(),
                    id.to_string(),
                );
                in_flight.spawn(async move {
                    let part = multipart.put_part(&location, &id, index, payload).await;
                    (index, part)
                });
                // The next part is read only once a slot is free: at most PARTS_IN_FLIGHT
                // parts are held, not one more filling beside them.
                while in_flight.len() >= PARTS_IN_FLIGHT {
                    self.part_done(&mut in_flight, &mut parts, key).await?;
                }
            }
            if end {
                break;
            }
        }
        while !in_flight.is_empty() {
            self.part_done(&mut in_flight, &mut parts, key).await?;
        }
        Ok(parts.into_iter().flatten().collect())
    }

    /// Waits for one part of `in_flight` and records its id in `parts`.
    async fn part_done(
        &self,
        in_flight: &mut JoinSet<(usize, object_store::Result<PartId>)>,
        parts: &mut [Option<PartId>],
        key: &str,
    ) -> Result<(), PutError> {
        match in_flight.join_next().await {
            Some(Ok((index, Ok(part)))) => {
                parts[index] = Some(part);
                Ok(())
            }
            Some(Ok((_, Err(e)))) => Err(self.put_error(e, key)),
            Some(Err(join)) => Err(PutError::Other(CoreError::backend(
                self.backend,
                format!("uploading a part to {} stopped: {join}", self.url(key)),
            ))),
            None => Ok(()),
        }
    }

    fn put_error(&self, e: object_store::Error, key: &str) -> PutError {
        match e {
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => PutError::Exists,
            other => PutError::Other(self.error(Op::Put, "uploading to", key, other)),
        }
    }
}

/// The error for an object that holds fewer bytes than a ranged read asked for (`detail`: what
/// is known of its size, e.g. ` (it holds 10 bytes)`): it was cut short or replaced behind
/// flowstore's back.
pub(crate) fn short_object(
    backend: &'static str,
    location: &str,
    offset: u64,
    len: u64,
    detail: &str,
) -> CoreError {
    CoreError::backend(
        backend,
        format!(
            "{location} is shorter than expected: {len} bytes at offset {offset} were asked \
             for{detail}. The object was truncated or replaced; register the flow again to upload \
             it."
        ),
    )
}

fn meta(m: object_store::ObjectMeta) -> BlobMeta {
    BlobMeta {
        key: m.location.to_string(),
        size: m.size,
        last_modified: m.last_modified,
        etag: m.e_tag,
        version: m.version,
    }
}

#[flowstore_core::async_trait]
impl Blobs for ObjectStoreBlobs {
    fn location(&self, key: &str) -> String {
        self.url(key)
    }

    async fn put(&self, key: &str, bytes: Bytes, overwrite: bool) -> Result<(), PutError> {
        let opts = PutOptions {
            mode: if overwrite {
                PutMode::Overwrite
            } else {
                PutMode::Create
            },
            ..Default::default()
        };
        self.client
            .store
            .put_opts(&ObjectPath::from(key), PutPayload::from(bytes), opts)
            .await
            .map(|_| ())
            .map_err(|e| self.put_error(e, key))
    }

    /// A multipart upload, [`PARTS_IN_FLIGHT`] parts of [`PART_SIZE`] at a time, completed
    /// create-only unless `overwrite` (see [`Blobs`]). An upload that fails is aborted.
    async fn put_stream(
        &self,
        key: &str,
        source: &Source,
        _len: u64,
        overwrite: bool,
    ) -> Result<(), PutError> {
        let location = ObjectPath::from(key);
        let create_only = (!overwrite).then_some(self.client.create_only.as_ref());
        if let Some(None) = create_only {
            match self.client.store.head(&location).await {
                Ok(_) => return Err(PutError::Exists),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(PutError::Other(self.error(Op::Put, "checking", key, e))),
            }
        }
        let multipart = &self.client.multipart;
        let id = multipart
            .create_multipart(&location)
            .await
            .map_err(|e| self.put_error(e, key))?;
        let completed = match self.upload_parts(&location, &id, source).await {
            Ok(parts) => match create_only.flatten() {
                Some(completion) => completion
                    .complete_create_only(&location, &id, parts)
                    .await
                    .map_err(|e| self.put_error(e, key)),
                None => multipart
                    .complete_multipart(&location, &id, parts)
                    .await
                    .map(|_| ())
                    .map_err(|e| self.put_error(e, key)),
            },
            Err(e) => Err(e),
        };
        if completed.is_err() {
            // Abandoned or refused: the parts sent are dropped (S3), or never committed (Azure).
            if let Err(abort) = multipart.abort_multipart(&location, &id).await {
                tracing::warn!(location = %self.url(key), error = %abort, "aborting an abandoned upload failed; the bucket's lifecycle rules remove its parts");
            }
        }
        completed
    }

    async fn get(&self, key: &str) -> Result<(BlobMeta, ChunkStream), CoreError> {
        let result = self
            .client
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| self.error(Op::Get, "downloading", key, e))?;
        let m = meta(result.meta.clone());
        let (backend, display, url) = (self.backend, self.display.clone(), self.url(key));
        let stream = result
            .into_stream()
            .map_err(move |e| {
                Failure {
                    backend,
                    display: &display,
                    what: format!("downloading {url}"),
                    location: url.clone(),
                    op: Op::Get,
                }
                .object_store(e)
            })
            .boxed();
        Ok((m, stream))
    }

    async fn exists(&self, key: &str) -> Result<bool, CoreError> {
        match self.client.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(Op::Get, "checking", key, e)),
        }
    }

    /// `object_store`'s ranged GET (a `Range` header; it checks the answer is the range asked
    /// for, but cuts a range that runs past the object's end, which is refused here).
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, CoreError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let short = |detail: &str| short_object(self.backend, &self.url(key), offset, len, detail);
        let end = offset.checked_add(len).ok_or_else(|| short(""))?;
        let location = ObjectPath::from(key);
        let bytes = match self.client.store.get_range(&location, offset..end).await {
            Ok(bytes) => bytes,
            Err(e @ object_store::Error::NotFound { .. }) => {
                return Err(self.error(Op::Get, "downloading", key, e))
            }
            Err(e) => {
                // A range past the end fails differently by service and client (416, or the
                // client's own range error): the object's size says whether that is why.
                return Err(match self.client.store.head(&location).await {
                    Ok(m) if m.size < end => {
                        short(&format!(" (it holds {} bytes)", m.size)).with_source(e)
                    }
                    _ => self.error(
                        Op::Get,
                        &format!("reading bytes {offset}..{end} of"),
                        key,
                        e,
                    ),
                });
            }
        };
        if bytes.len() as u64 != len {
            return Err(short(&format!(" (only {} came back)", bytes.len())));
        }
        Ok(bytes)
    }

    async fn head_bytes(&self, key: &str, n: u64) -> Option<Bytes> {
        self.client
            .store
            .get_range(&ObjectPath::from(key), 0..n)
            .await
            .ok()
    }

    async fn list(&self, prefix: Option<&str>) -> Result<Vec<BlobMeta>, CoreError> {
        let p = prefix.map(ObjectPath::from);
        let metas: Vec<object_store::ObjectMeta> = self
            .client
            .store
            .list(p.as_ref())
            .try_collect()
            .await
            .map_err(|e| self.error(Op::List, "listing", prefix.unwrap_or(""), e))?;
        Ok(metas.into_iter().map(meta).collect())
    }

    /// `object_store`'s delete: S3 answers 204 for a key that is not there, Azure 404
    /// (`BlobNotFound`), which is success here; a missing container stays an error.
    async fn delete(&self, key: &str) -> Result<(), CoreError> {
        match self.client.store.delete(&ObjectPath::from(key)).await {
            Ok(()) => Ok(()),
            Err(e @ object_store::Error::NotFound { .. })
                if crate::error::names_missing_bucket(&e.to_string()) =>
            {
                Err(self.error(Op::Delete, "deleting", key, e))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(Op::Delete, "deleting", key, e)),
        }
    }

    async fn replace(&self, key: &str, bytes: Bytes) -> Result<(), CoreError> {
        self.client
            .store
            .put(&ObjectPath::from(key), bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| self.error(Op::Put, "writing", key, e))
    }
}
