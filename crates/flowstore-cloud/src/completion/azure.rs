//! Azure's Put Block List with `If-None-Match: *`.

use std::sync::Arc;

use base64::Engine as _;
use object_store::azure::{AzureAuthorizer, MicrosoftAzure};
use object_store::client::{HttpClient, HttpRequest, HttpRequestBody};
use object_store::multipart::PartId;
use object_store::path::Path as ObjectPath;

use super::{encode_path, send, CreateOnlyCompletion, Retries};

/// Completes Azure block uploads create-only (see the [module](super)).
#[derive(Debug)]
pub(crate) struct AzureCompletion {
    /// The client whose credentials sign the request.
    pub azure: Arc<MicrosoftAzure>,
    /// A client made from the same options as `azure`'s.
    pub http: HttpClient,
    /// `<endpoint>/<container>`, as `object_store` addresses blobs with an explicit endpoint.
    pub container_url: String,
    /// The storage account (Shared Key signatures name it).
    pub account: String,
    pub retries: Retries,
}

#[flowstore_core::async_trait]
impl CreateOnlyCompletion for AzureCompletion {
    async fn complete_create_only(
        &self,
        path: &ObjectPath,
        _id: &str,
        parts: Vec<PartId>,
    ) -> object_store::Result<()> {
        let credential = self.azure.credentials().get_credential().await?;
        let url = format!(
            "{}/{}?comp=blocklist",
            self.container_url,
            encode_path(path)
        );
        let body = block_list(&parts);
        let make = || -> object_store::Result<HttpRequest> {
            let mut request = http::Request::builder()
                .method(http::Method::PUT)
                .uri(&url)
                .header(http::header::IF_NONE_MATCH, "*")
                .header(http::header::CONTENT_TYPE, "application/xml")
                .header(http::header::CONTENT_LENGTH, body.len())
                .body(HttpRequestBody::from(body.clone()))
                .map_err(|e| object_store::Error::Generic {
                    store: "MicrosoftAzure",
                    source: Box::new(e),
                })?;
            AzureAuthorizer::new(&credential, &self.account).try_authorize(&mut request)?;
            Ok(request)
        };
        send("Azure", &self.http, path, &make, self.retries).await
    }
}

/// The Put Block List body: the blocks `object_store` uploaded, in order. A part's
/// `content_id` is its block id before base64 (as `object_store`'s `put_block` sends it).
fn block_list(parts: &[PartId]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<BlockList>");
    for part in parts {
        xml.push_str(&format!(
            "<Uncommitted>{}</Uncommitted>",
            b64.encode(&part.content_id)
        ));
    }
    xml.push_str("</BlockList>");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_are_base64_in_order() {
        let parts = vec![
            PartId {
                content_id: "00000000000000000001".into(),
            },
            PartId {
                content_id: "00000000000000000002".into(),
            },
        ];
        assert_eq!(
            block_list(&parts),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<BlockList>\
             <Uncommitted>MDAwMDAwMDAwMDAwMDAwMDAwMDE=</Uncommitted>\
             <Uncommitted>MDAwMDAwMDAwMDAwMDAwMDAwMDI=</Uncommitted></BlockList>"
        );
    }
}
