//! The few blob operations the engine needs, and their implementation on `object_store`
//! (S3, Azure). GCS implements them on its JSON API (see `gcs_json`).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use flowstore_core::Error as CoreError;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::error::{Failure, Op};

/// Scripts larger than this upload in parts / as a stream (never held in memory whole).
pub const MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;
const PART_SIZE: usize = 8 * 1024 * 1024;

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

/// Blob operations on one bucket or container.
#[flowstore_core::async_trait]
pub(crate) trait Blobs: Send + Sync {
    /// Uploads small bytes; create-only unless `overwrite`.
    async fn put(&self, key: &str, bytes: Bytes, overwrite: bool) -> Result<(), PutError>;
    /// Uploads a large file (a script, a bundle blob) streamed from disk; create-only unless
    /// `overwrite`.
    async fn put_file(&self, key: &str, path: &Path, overwrite: bool) -> Result<(), PutError>;
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

/// [`Blobs`] on an `object_store` client.
pub(crate) struct ObjectStoreBlobs {
    pub backend: &'static str,
    pub display: String,
    pub store: Arc<dyn ObjectStore>,
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
    async fn put(&self, key: &str, bytes: Bytes, overwrite: bool) -> Result<(), PutError> {
        let opts = PutOptions {
            mode: if overwrite {
                PutMode::Overwrite
            } else {
                PutMode::Create
            },
            ..Default::default()
        };
        self.store
            .put_opts(&ObjectPath::from(key), PutPayload::from(bytes), opts)
            .await
            .map(|_| ())
            .map_err(|e| self.put_error(e, key))
    }

    /// Multipart upload. A multipart upload cannot be create-only on every service, so the key
    /// is checked first (default keys are fresh; a fixed key races only with itself).
    async fn put_file(&self, key: &str, path: &Path, overwrite: bool) -> Result<(), PutError> {
        let location = ObjectPath::from(key);
        if !overwrite {
            match self.store.head(&location).await {
                Ok(_) => return Err(PutError::Exists),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(PutError::Other(self.error(Op::Put, "checking", key, e))),
            }
        }
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|e| self.put_error(e, key))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let read_err = |e| PutError::Other(CoreError::io(format!("reading {}", path.display()), e));
        let mut file = tokio::fs::File::open(path).await.map_err(read_err)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).await.map_err(read_err)?;
            if n == 0 {
                break;
            }
            writer
                .wait_for_capacity(2)
                .await
                .map_err(|e| self.put_error(e, key))?;
            writer.write(&buf[..n]);
        }
        writer
            .finish()
            .await
            .map(|_| ())
            .map_err(|e| self.put_error(e, key))
    }

    async fn get(&self, key: &str) -> Result<(BlobMeta, ChunkStream), CoreError> {
        let result = self
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
        match self.store.head(&ObjectPath::from(key)).await {
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
        let bytes = match self.store.get_range(&location, offset..end).await {
            Ok(bytes) => bytes,
            Err(e @ object_store::Error::NotFound { .. }) => {
                return Err(self.error(Op::Get, "downloading", key, e))
            }
            Err(e) => {
                // A range past the end fails differently by service and client (416, or the
                // client's own range error): the object's size says whether that is why.
                return Err(match self.store.head(&location).await {
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
        self.store
            .get_range(&ObjectPath::from(key), 0..n)
            .await
            .ok()
    }

    async fn list(&self, prefix: Option<&str>) -> Result<Vec<BlobMeta>, CoreError> {
        let p = prefix.map(ObjectPath::from);
        let metas: Vec<object_store::ObjectMeta> = self
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
        match self.store.delete(&ObjectPath::from(key)).await {
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
        self.store
            .put(&ObjectPath::from(key), bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| self.error(Op::Put, "writing", key, e))
    }
}
