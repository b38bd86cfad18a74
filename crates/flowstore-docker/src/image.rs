//! What goes into the image, whichever way it is built: the flows' files, the `files` copied
//! from the host, and the `sha256sum -c` checklist the health check runs.

use flowstore_core::{key, Error as CoreError, Result};

use crate::storage::Docker;

/// A file of the image: absolute image path, contents, mode.
pub(crate) type ImageFile = (String, Vec<u8>, u32);

impl Docker {
    /// The image path of a flow's file: `{directory}/flows/{slug}.flow`.
    pub fn flow_location(&self, name: &str) -> String {
        format!(
            "{}/flows/{}.flow",
            self.config.directory.trim_end_matches('/'),
            key::flow_slug(name)
        )
    }

    /// The files of the flows layer: each flow (a bundle's manifest included), the `files`, and
    /// a `sha256sum -c` checklist of all of them and of every bundle tree's files (the build's
    /// health check).
    ///
    /// Errors with [`CoreError::Io`] naming a host file that cannot be read, and
    /// [`CoreError::FlowCorrupt`] when a script changed since it was registered.
    pub(crate) fn layer_files(&self) -> Result<Vec<ImageFile>> {
        let mut files: Vec<ImageFile> = self
            .staged
            .iter()
            .map(|(_, location, bytes)| (location.clone(), bytes.to_vec(), 0o644))
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
            files.push((image.clone(), content, 0o644));
        }
        let mut checklist: String = files
            .iter()
            .map(|(path, content, _)| {
                format!(
                    "{}  {path}\n",
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(content))
                )
            })
            .collect();
        // Every file of every bundle's tree, from its manifest.
        for bundle in &self.staged_bundles {
            for f in bundle.scanned.manifest.files() {
                let hex = f.digest.strip_prefix("sha256:").unwrap_or(&f.digest);
                checklist.push_str(&format!("{hex}  {}/{}\n", bundle.dir, f.path));
            }
        }
        files.push((
            format!(
                "{}/flows.sha256",
                self.config.directory.trim_end_matches('/')
            ),
            checklist.into_bytes(),
            0o644,
        ));
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
