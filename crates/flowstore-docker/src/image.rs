//! What goes into the image, whichever way it is built: the flows' files, the `files` copied
//! from the host, and the `sha256sum -c` checklist the health check runs.

use bytes::Bytes;
use flowstore_core::{key, Error as CoreError, Result};

use crate::layer::{Content, ImageFile};
use crate::storage::Docker;

impl Docker {
    /// The image path of a flow's file: `{directory}/flows/{slug}.flow`.
    pub fn flow_location(&self, name: &str) -> String {
        format!(
            "{}/flows/{}.flow",
            self.config.directory.trim_end_matches('/'),
            key::flow_slug(name)
        )
    }

    /// The files of the flows layer: each flow (a bundle's manifest included; a flow sealed from
    /// a file stays in its file, read only as the layer is written), the `files` (read now), and
    /// a `sha256sum -c` checklist of all of them and of every bundle tree's files (the build's
    /// health check).
    ///
    /// Errors with [`CoreError::Io`] naming a host file that cannot be read, and
    /// [`CoreError::FlowCorrupt`] when a script changed since it was registered.
    pub(crate) fn layer_files(&self) -> Result<Vec<ImageFile>> {
        let mut files: Vec<ImageFile> = self
            .staged
            .iter()
            .map(|(name, location, sealed)| ImageFile {
                path: location.clone(),
                mode: 0o644,
                content: Content::Sealed(sealed.clone()),
                what: format!("flow \"{name}\""),
            })
            .collect();
        for (host, image) in &self.build.files {
            let content =
                std::fs::read(host).map_err(|e| CoreError::io(format!("reading {host}"), e))?;
            // A script registered from this file must go into the image as it was registered.
            for (flow, location) in &self.index.flows {
                if location == image {
                    self.index.verify_digest(flow, host, &content)?;
                }
            }
            files.push(ImageFile {
                path: image.clone(),
                mode: 0o644,
                content: Content::Bytes(Bytes::from(content)),
                what: format!("host file {host}"),
            });
        }
        // A sealed flow's SHA-256 is its digest: nothing is read for the checklist.
        let mut checklist: String = files
            .iter()
            .map(|f| format!("{}  {}\n", f.content.sha256_hex(), f.path))
            .collect();
        // Every file of every bundle's tree, from its manifest.
        for bundle in &self.staged_bundles {
            for f in bundle.scanned.manifest.files() {
                let hex = f.digest.strip_prefix("sha256:").unwrap_or(&f.digest);
                checklist.push_str(&format!("{hex}  {}/{}\n", bundle.dir, f.path));
            }
        }
        let path = format!(
            "{}/flows.sha256",
            self.config.directory.trim_end_matches('/')
        );
        files.push(ImageFile {
            what: format!("the checklist {path}"),
            path,
            mode: 0o644,
            content: Content::Bytes(Bytes::from(checklist)),
        });
        Ok(files)
    }

    /// Script mode: the script's SHA-256 when `path` is a destination in `files` (the host file is
    /// read now), so the health check and `get_flow` can check it.
    pub(crate) fn script_digest(&self, path: &str) -> Result<Option<String>> {
        let Some((host, _)) = self.build.files.iter().find(|(_, image)| *image == path) else {
            return Ok(None);
        };
        let bytes =
            std::fs::read(host).map_err(|e| CoreError::io(format!("reading script {host}"), e))?;
        Ok(Some(flowstore_core::envelope::sha256_digest(&bytes)))
    }
}
