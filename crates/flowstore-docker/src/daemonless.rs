//! Daemonless builds: the base image's manifest and config are read from its registry (the
//! variant for the wanted platform), its layers are copied to the target repository, a layer per
//! bundle tree and one layer of flows are added, and the new config and manifest are pushed. No
//! Docker daemon, no pull.

use bytes::Bytes;
use flowstore_core::{Error as CoreError, Progress};

use crate::error::{Error, Result};
use crate::layer::{self, LayerFile};
use crate::oci::{
    Descriptor, Digest, History, ImageConfiguration, ImageManifest, ImageReference, CONFIG, LAYER,
};
use crate::registry::Registry;
use crate::storage::Docker;

/// The label recording where the flows are in the image.
pub(crate) const DIRECTORY_LABEL: &str = "io.flowstore.directory";

impl Docker {
    /// Daemonless: the base image's layers, one layer per bundle tree, and one layer of flows,
    /// pushed through the registry API as `name:tag` (a layer the repository has is not sent
    /// again); returns the manifest digest.
    ///
    /// Errors with [`Error::Registry`] (404 for a missing base image or blob, 401/403 for refused
    /// credentials), [`Error::Config`] for a base image whose manifest or config lacks a field
    /// (a digest, `rootfs`), and [`CoreError::Io`] for an unreadable host file.
    pub(crate) async fn build_daemonless(&mut self, name: &str, tag: &str) -> Result<Digest> {
        let registry_url = self.config.registry_url.clone().ok_or_else(|| {
            Error::config("the daemonless build pushes to a registry: set registry_url")
        })?;
        let base_text = self
            .build
            .base_image
            .clone()
            .ok_or_else(|| Error::config("the daemonless build needs a base_image"))?;
        let base: ImageReference = base_text.parse()?;
        let auth = self.registry_auth()?;
        let src = Registry::new(&base.registry, auth.clone());
        let dst = Registry::new(&registry_url, auth);
        let (manifest, _) = src
            .platform_manifest(
                &base.repository,
                &base.reference,
                "linux",
                &self.build.platform,
            )
            .await?;
        let config_bytes = src.blob(&base.repository, &manifest.config.digest).await?;
        let mut config: ImageConfiguration =
            serde_json::from_slice(&config_bytes).map_err(|e| {
                Error::config(format!(
                    "the config {} of base image {base_text} is not a valid image config: {e}",
                    manifest.config.digest
                ))
            })?;
        // Every layer is built (into temporary files) before anything is pushed: a flow whose
        // file changed after it was sealed, or a bundle file changed since its scan, fails the
        // build with nothing sent.
        let bundles = self.staged_bundles.clone();
        let target = format!("image {registry_url}/{name}:{tag}");
        let mut bundle_files = Vec::new();
        for staged in &bundles {
            let (dir, scanned) = (staged.dir.clone(), staged.scanned.clone());
            let built = tokio::task::spawn_blocking(move || layer::bundle_file(&dir, &scanned))
                .await
                .map_err(|e| {
                    CoreError::backend(
                        crate::TYPE_NAME,
                        format!("building the layer of bundle \"{}\": {e}", staged.name),
                    )
                })??;
            bundle_files.push(built);
        }
        let files = self.layer_files()?;
        let flows_target = target.clone();
        let flows_built = tokio::task::spawn_blocking(move || {
            LayerFile::build(|l| layer::write_files(l.tar(), &files, &flows_target))
        })
        .await
        .map_err(|e| {
            CoreError::backend(
                crate::TYPE_NAME,
                format!("building the flows layer of {target}: {e}"),
            )
        })??;
        tracing::debug!(image = %target, layer = %flows_built.digest, bytes = flows_built.size, "built the flows layer");

        let total = Some(manifest.layers.len() as u64 + bundles.len() as u64 + 2);
        for (i, l) in manifest.layers.iter().enumerate() {
            dst.copy_blob(&src, &base.repository, name, l).await?;
            self.report(Progress {
                what: "blobs pushed",
                done: i as u64 + 1,
                total,
            });
        }
        let mut done = manifest.layers.len() as u64;
        // One layer per bundle, below the flows layer (which stays the image's last).
        let mut bundle_layers = Vec::new();
        for (staged, built) in bundles.iter().zip(&bundle_files) {
            let (descriptor, sent) = dst.upload_layer_file(name, LAYER, built).await?;
            self.record_bundle_push(staged, descriptor.digest.clone(), built.size, sent);
            config.rootfs.diff_ids.push(built.diff_id.clone());
            config.history.push(History {
                created_by: Some(format!("flowstore: add bundle {}", staged.dir)),
                comment: Some("flowstore daemonless build".into()),
                ..History::default()
            });
            bundle_layers.push(descriptor);
            done += 1;
            self.report(Progress {
                what: "blobs pushed",
                done,
                total,
            });
        }
        drop(bundle_files);
        let (flows_layer, _) = dst.upload_layer_file(name, LAYER, &flows_built).await?;
        let built = flows_built;
        done += 1;
        self.report(Progress {
            what: "blobs pushed",
            done,
            total,
        });
        self.add_to_config(&mut config, built.diff_id.clone());
        drop(built);
        let config_bytes =
            Bytes::from(serde_json::to_vec(&config).expect("image configs serialize"));
        let config_descriptor = dst.push_blob(name, CONFIG, config_bytes).await?;
        self.report(Progress {
            what: "blobs pushed",
            done: done + 1,
            total,
        });
        let mut layers: Vec<Descriptor> = manifest.layers;
        layers.extend(bundle_layers);
        layers.push(flows_layer);
        let mut pushed = ImageManifest::new(config_descriptor, layers);
        // What the base manifest carries besides config and layers (annotations) stays.
        pushed.other = manifest.other;
        dst.push_manifest(name, tag, &pushed.into()).await
    }

    /// The base config plus the flows layer: its diff id, a history entry, the image's
    /// environment, the labels naming the flows directory and the flows' slugs, and the build
    /// time (`created`: the tag's timestamp, else now).
    fn add_to_config(&self, config: &mut ImageConfiguration, diff_id: Digest) {
        config.rootfs.diff_ids.push(diff_id);
        config.history.push(History {
            created_by: Some("flowstore: add flows".into()),
            comment: Some("flowstore daemonless build".into()),
            ..History::default()
        });
        let container = config.config.get_or_insert_with(Default::default);
        let env = container.env.get_or_insert_with(Vec::new);
        for (k, v) in &self.build.env_vars {
            env.push(format!("{k}={v}"));
        }
        let labels = container.labels.get_or_insert_with(Default::default);
        labels.insert(DIRECTORY_LABEL.to_string(), self.config.directory.clone());
        labels.insert(crate::versions::FLOWS_LABEL.to_string(), self.flows_label());
        // When it was built (as `docker build` records it): two builds of the same flows are
        // two manifests, so deleting one version by digest never takes the other's tag along.
        let created = self
            .config
            .image_tag
            .as_deref()
            .and_then(crate::versions::parse_timestamp_slug)
            .unwrap_or_else(chrono::Utc::now);
        config.other.insert(
            "created".to_string(),
            created
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
    }
}
