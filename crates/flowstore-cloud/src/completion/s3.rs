//! S3's CompleteMultipartUpload with `If-None-Match: *`.

use std::sync::Arc;

use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{HttpClient, HttpRequest, HttpRequestBody};
use object_store::multipart::PartId;
use object_store::path::Path as ObjectPath;

use super::{encode_path, encode_value, send, CreateOnlyCompletion, Retries};

/// Completes S3 multipart uploads create-only (see the [module](super)).
#[derive(Debug)]
pub(crate) struct S3Completion {
    /// The client whose credentials sign the request.
    pub s3: Arc<AmazonS3>,
    /// A client made from the same options as `s3`'s.
    pub http: HttpClient,
    /// `https://s3.<region>.amazonaws.com/<bucket>` or `<endpoint>/<bucket>` (path style, as
    /// `object_store` addresses it with the builder settings flowstore uses).
    pub bucket_url: String,
    /// The region the signature is for.
    pub region: String,
    /// False for a server reached without credentials (unsigned requests).
    pub signed: bool,
    pub retries: Retries,
}

#[flowstore_core::async_trait]
impl CreateOnlyCompletion for S3Completion {
    async fn complete_create_only(
        &self,
        path: &ObjectPath,
        id: &str,
        parts: Vec<PartId>,
    ) -> object_store::Result<()> {
        let credential = if self.signed {
            Some(self.s3.credentials().get_credential().await?)
        } else {
            None
        };
        let url = format!(
            "{}/{}?uploadId={}",
            self.bucket_url,
            encode_path(path),
            encode_value(id)
        );
        let body = complete_body(&parts);
        let make = || -> object_store::Result<HttpRequest> {
            let mut request = http::Request::builder()
                .method(http::Method::POST)
                .uri(&url)
                .header(http::header::IF_NONE_MATCH, "*")
                .header(http::header::CONTENT_TYPE, "application/xml")
                .body(HttpRequestBody::from(body.clone()))
                .map_err(|e| object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(e),
                })?;
            if let Some(credential) = &credential {
                AwsAuthorizer::new(credential, "s3", &self.region)
                    .try_authorize(&mut request, None)?;
            }
            Ok(request)
        };
        send("S3", &self.http, path, &make, self.retries).await
    }
}

/// The CompleteMultipartUpload body: each part's number (from 1) and ETag, in order. A part's
/// `content_id` is its ETag as long as the client computes no checksums (flowstore sets no
/// checksum algorithm; with one, `object_store` packs the ETag and checksum into XML there).
fn complete_body(parts: &[PartId]) -> String {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (i, part) in parts.iter().enumerate() {
        xml.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            i + 1,
            escape(&part.content_id)
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    xml
}

/// XML text escaping (ETags are quoted hex, but a server may put anything there).
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_numbers_parts_from_one_in_order() {
        let parts = vec![
            PartId {
                content_id: "\"a1\"".into(),
            },
            PartId {
                content_id: "\"b2\"".into(),
            },
        ];
        assert_eq!(
            complete_body(&parts),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;a1&quot;</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>&quot;b2&quot;</ETag></Part></CompleteMultipartUpload>"
        );
    }
}
