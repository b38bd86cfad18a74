//! Create-only completion of multipart uploads (S3, Azure), which `object_store` 0.14 cannot
//! send: its S3 `complete_multipart` always completes in overwrite mode, and its Azure
//! `put_block_list` takes no condition. The parts still go up through `object_store`
//! ([`MultipartStore`](object_store::multipart::MultipartStore)); only the request that makes the
//! object appear is sent from here, with `If-None-Match: *`, signed by `object_store`'s own
//! authorizers ([`AwsAuthorizer`](object_store::aws::AwsAuthorizer),
//! [`AzureAuthorizer`](object_store::azure::AzureAuthorizer)) and sent on an
//! `object_store` HTTP client made from the same client options.
//!
//! With the condition on the completing request, two registrations racing for one fixed key
//! store exactly one object: the service refuses the later completion (S3: 412; Azure: 409 or
//! 412), which is [`object_store::Error::AlreadyExists`] here.

// Without S3 and Azure only the trait is used (by `blobs`).
#![cfg_attr(not(any(feature = "s3", feature = "azure")), allow(dead_code))]

use std::time::Duration;

use bytes::Bytes;
use object_store::client::{HttpClient, HttpErrorKind, HttpRequest};
use object_store::multipart::PartId;
use object_store::path::Path as ObjectPath;

#[cfg(feature = "azure")]
mod azure;
#[cfg(feature = "s3")]
mod s3;

#[cfg(feature = "azure")]
pub(crate) use azure::AzureCompletion;
#[cfg(feature = "s3")]
pub(crate) use s3::S3Completion;

/// Completes a multipart upload only if no object is at its key yet.
#[flowstore_core::async_trait]
pub(crate) trait CreateOnlyCompletion: Send + Sync {
    /// Completes upload `id` of `parts` (in order) at `path`, create-only.
    ///
    /// Errors: [`object_store::Error::AlreadyExists`] when an object is there (nothing of this
    /// upload is stored then); [`object_store::Error::PermissionDenied`] on 401/403;
    /// [`object_store::Error::NotFound`] on 404 (a missing bucket or container, or an upload
    /// the service no longer knows); [`object_store::Error::Generic`] for anything else, after
    /// the retries, with the status in its message. An answer lost after the request was sent,
    /// followed by a refusal of the retry, is an error saying the object may have been stored.
    async fn complete_create_only(
        &self,
        path: &ObjectPath,
        id: &str,
        parts: Vec<PartId>,
    ) -> object_store::Result<()>;
}

/// One attempt's request, made afresh for each attempt (signatures carry the time).
pub(crate) type MakeRequest<'a> = dyn Fn() -> object_store::Result<HttpRequest> + Send + Sync + 'a;

/// How the completing request is retried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retries {
    /// Retries after the first attempt.
    pub max_retries: usize,
}

/// A service's answer that is not a success, kept as the error's source.
#[derive(Debug, thiserror::Error)]
#[error("{service} answered the completing request with status code: {status}{detail}")]
pub(crate) struct CompletionRefused {
    service: &'static str,
    status: u16,
    /// `: <first 300 characters of the body>`, or empty.
    detail: String,
}

/// The answer to a completing request that was sent but whose answer was lost: the retry was
/// refused in a way that a completed first attempt would also cause.
#[derive(Debug, thiserror::Error)]
#[error(
    "the answer to the request completing the upload to {path} was lost after it was sent, and \
     the retry was refused ({refusal}): the object may or may not have been stored. Fetch that \
     key to see what is there before registering again"
)]
pub(crate) struct OutcomeUnknown {
    path: String,
    refusal: CompletionRefused,
}

/// Sends the completing request made by `make` on `http` and reads the answer: a 2xx without
/// an `<Error>` body is success (S3 can answer 200 and put an error in the body); 409 and 412
/// mean an object is at the key, unless an earlier attempt may have completed the upload (then
/// any 4xx is [`OutcomeUnknown`]); 429, 5xx, an error inside a 200, and transport failures are
/// retried up to `retries.max_retries` times with a short backoff.
pub(crate) async fn send(
    service: &'static str,
    http: &HttpClient,
    path: &ObjectPath,
    make: &MakeRequest<'_>,
    retries: Retries,
) -> object_store::Result<()> {
    // Set once a request may have reached the service without its answer reaching us.
    let mut maybe_applied = false;
    let mut attempt = 0;
    loop {
        let last = attempt >= retries.max_retries;
        match http.execute(make()?).await {
            Err(e) => {
                if e.kind() != HttpErrorKind::Connect {
                    maybe_applied = true;
                }
                if last {
                    return Err(generic(service, e));
                }
                tracing::debug!(%path, error = %e, attempt, "completing request failed; retrying");
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.into_body().bytes().await.unwrap_or_default();
                let refused = |status| CompletionRefused {
                    service,
                    status,
                    detail: excerpt(&body),
                };
                let error_in_body = contains(&body, b"<Error>");
                match status {
                    200..=299 if !error_in_body => return Ok(()),
                    400..=499 if maybe_applied => {
                        return Err(generic(
                            service,
                            OutcomeUnknown {
                                path: path.to_string(),
                                refusal: refused(status),
                            },
                        ))
                    }
                    409 | 412 => {
                        return Err(object_store::Error::AlreadyExists {
                            path: path.to_string(),
                            source: Box::new(refused(status)),
                        })
                    }
                    401 | 403 => {
                        return Err(object_store::Error::PermissionDenied {
                            path: path.to_string(),
                            source: Box::new(refused(status)),
                        })
                    }
                    404 => {
                        return Err(object_store::Error::NotFound {
                            path: path.to_string(),
                            source: Box::new(refused(status)),
                        })
                    }
                    200..=299 | 429 | 500..=599 if !last => {
                        // S3 answers 200 with an error body when the completion failed late;
                        // like a 5xx, the upload is still there to complete.
                        tracing::debug!(%path, status, attempt, "completing request refused; retrying");
                    }
                    _ => return Err(generic(service, refused(status))),
                }
            }
        }
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

/// 50 ms, doubling, at most 2 s (as the other requests' retries).
fn backoff(attempt: usize) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(2))
}

fn generic(
    service: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> object_store::Error {
    object_store::Error::Generic {
        store: service,
        source: Box::new(e),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `: <the body's first 300 characters>`, or nothing for an empty body.
fn excerpt(body: &Bytes) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", text.chars().take(300).collect::<String>())
    }
}

/// The characters percent-encoded in a path segment or a query value: all but RFC 3986's
/// unreserved ones, as SigV4 canonicalizes them.
const ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `key` percent-encoded segment by segment, `/` kept between segments.
pub(crate) fn encode_path(path: &ObjectPath) -> String {
    path.parts()
        .map(|p| percent_encoding::utf8_percent_encode(p.as_ref(), ENCODE).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// A query value percent-encoded.
pub(crate) fn encode_value(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, ENCODE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_segment_by_segment() {
        let p = ObjectPath::from("flows/my flow+1/2026-12-02t07:00:00");
        assert_eq!(
            encode_path(&p),
            "flows/my%20flow%2B1/2026-12-02t07%3A00%3A00"
        );
        assert_eq!(encode_value("a+b/c="), "a%2Bb%2Fc%3D");
    }

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(backoff(0), Duration::from_millis(50));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(60), Duration::from_secs(2));
    }

    #[test]
    fn refusals_name_the_status_for_the_error_mapping() {
        let e = CompletionRefused {
            service: "S3",
            status: 503,
            detail: excerpt(&Bytes::from_static(b"<Error><Code>SlowDown</Code></Error>")),
        };
        // error.rs reads the status from "status code: N".
        assert_eq!(
            e.to_string(),
            "S3 answered the completing request with status code: 503: <Error><Code>SlowDown</Code></Error>"
        );
    }

    /// A server on 127.0.0.1 answering request N with `script[N]`: an HTTP status and body, or
    /// `None` to close the connection without answering (an answer lost after the request was
    /// sent). Returns its URL and the number of requests it read.
    async fn scripted(
        script: Vec<Option<(u16, &'static str)>>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            let script = std::sync::Arc::new(script);
            while let Ok((conn, _)) = listener.accept().await {
                let (script, count) = (script.clone(), count.clone());
                tokio::spawn(async move {
                    let (r, mut w) = conn.into_split();
                    let mut r = BufReader::new(r);
                    loop {
                        let mut len = 0usize;
                        loop {
                            let mut line = String::new();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                len = v.trim().parse().unwrap();
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0u8; len];
                        r.read_exact(&mut body).await.unwrap();
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        let Some((status, text)) = script[n.min(script.len() - 1)] else {
                            return;
                        };
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        w.write_all(answer.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        (url, seen)
    }

    /// Sends one completing request to a scripted server, retrying at most twice.
    async fn complete(
        script: Vec<Option<(u16, &'static str)>>,
    ) -> (object_store::Result<()>, usize) {
        use object_store::client::HttpConnector;
        let (url, seen) = scripted(script).await;
        let http = object_store::client::ReqwestConnector::default()
            .connect(&object_store::ClientOptions::new().with_allow_http(true))
            .unwrap();
        let make = || {
            Ok(http::Request::builder()
                .method(http::Method::POST)
                .uri(format!("{url}/b/k?uploadId=1"))
                .body(object_store::client::HttpRequestBody::from(
                    "<parts/>".to_string(),
                ))
                .unwrap())
        };
        let path = ObjectPath::from("k");
        let result = send("S3", &http, &path, &make, Retries { max_retries: 2 }).await;
        (result, seen.load(std::sync::atomic::Ordering::SeqCst))
    }

    #[tokio::test]
    async fn answers_map_to_outcomes() {
        let (r, n) = complete(vec![Some((503, "")), Some((200, "<Result/>"))]).await;
        assert!(r.is_ok() && n == 2, "a 503 is retried: {r:?} after {n}");
        let (r, n) = complete(vec![
            Some((200, "<Error><Code>InternalError</Code></Error>")),
            Some((200, "<Result/>")),
        ])
        .await;
        assert!(
            r.is_ok() && n == 2,
            "an error in a 200 is retried: {r:?} after {n}"
        );
        let (r, n) = complete(vec![Some((
            412,
            "<Error><Code>PreconditionFailed</Code></Error>",
        ))])
        .await;
        assert!(
            matches!(r, Err(object_store::Error::AlreadyExists { .. })) && n == 1,
            "{r:?} after {n}"
        );
        let (r, _) = complete(vec![Some((403, "denied"))]).await;
        assert!(
            matches!(r, Err(object_store::Error::PermissionDenied { .. })),
            "{r:?}"
        );
        let (r, n) = complete(vec![Some((500, "busy"))]).await;
        let e = r.unwrap_err().to_string();
        assert!(
            n == 3 && e.contains("status code: 500: busy"),
            "{e} after {n}"
        );
    }

    #[tokio::test]
    async fn a_lost_answer_then_a_refusal_is_not_called_a_conflict() {
        // The first answer never comes: that attempt may have completed the upload, so the
        // retry's 412 may be this very upload's object.
        let (r, n) = complete(vec![None, Some((412, ""))]).await;
        assert_eq!(n, 2);
        let e = r.unwrap_err();
        assert!(
            !matches!(e, object_store::Error::AlreadyExists { .. }),
            "{e:?}"
        );
        let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(text.contains("may or may not have been stored"), "{text}");
    }
}
