//! Stored versions in a registry: every image `persist` pushes is one version, tagged with the
//! timestamp slug of its build. `list_versions` lists the repository's timestamp tags,
//! `delete_version` deletes one tag's manifest (by digest, as the distribution API deletes).
//!
//! A version's location is `<registry>/<image name>:<tag>` (the image reference an agent pulls);
//! its slug is the one flow's slug when the image holds a single flow (recorded at build in the
//! [`FLOWS_LABEL`] label), else the last segment of the image name. Only tags that are flowstore
//! timestamp slugs (`2026-11-24t02-51-19-123456-00-00`) are versions: `latest`, `v1` and any
//! other tag are never listed, so never pruned.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use flowstore_core::{key, Error as CoreError, Result, StoredVersion};
use futures::{StreamExt, TryStreamExt};

use crate::config::TYPE_NAME;
use crate::error::Error;
use crate::oci::{Digest, ImageConfiguration, Manifest};
use crate::registry::Registry;
use crate::storage::Docker;

/// The image config label listing the slugs of the flows in the image (comma-separated),
/// written by both build modes.
pub(crate) const FLOWS_LABEL: &str = "io.flowstore.flows";

/// Tags asked for per page of `GET /v2/<name>/tags/list`.
pub(crate) const TAG_PAGE: usize = 100;

/// Manifests read (or resolved) at a time while listing or checking tags.
const PARALLEL: usize = 8;

/// Parses a timestamp slug (`2026-11-24t02-51-19-123456-00-00`, what
/// [`key::timestamp_slug`] makes) back into its instant; `None` for any other text. Strict: the
/// slug of the result is `slug` again.
pub(crate) fn parse_timestamp_slug(slug: &str) -> Option<DateTime<Utc>> {
    let b = slug.as_bytes();
    if b.len() != 32 || b[10] != b't' || !slug.ends_with("-00-00") {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        let s = slug.get(from..to)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let dashes = [4, 7, 13, 16, 19, 26];
    if dashes.iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(number(0, 4)? as i32, number(5, 7)?, number(8, 10)?)?;
    let at = date
        .and_hms_micro_opt(
            number(11, 13)?,
            number(14, 16)?,
            number(17, 19)?,
            number(20, 26)?,
        )?
        .and_utc();
    (key::timestamp_slug(&at) == slug).then_some(at)
}

/// An image of the repository: its tag's manifest digest, total layer size and flow slugs.
struct Image {
    tag: String,
    digest: Digest,
    size: Option<u64>,
    flows: Vec<String>,
}

impl Docker {
    /// The [`FLOWS_LABEL`] value: the slugs of the image's flows, sorted, comma-separated.
    pub(crate) fn flows_label(&self) -> String {
        let slugs: std::collections::BTreeSet<String> =
            self.index.flows.keys().map(|n| key::flow_slug(n)).collect();
        slugs.into_iter().collect::<Vec<_>>().join(",")
    }

    /// The registry, the repository and a client, where this storage can list and delete its
    /// versions; the error says why not.
    fn version_repository(&self, doing: &str) -> Result<(String, String, Registry)> {
        let Some(registry) = self.config.registry_url.clone() else {
            return Err(CoreError::Unsupported {
                backend: TYPE_NAME.to_string(),
                what: format!(
                    "{doing}: this Docker storage has no registry (a local image{}); flowstore \
                     lists and deletes versions only in a registry. Remove local images with \
                     `docker image rm`, or push to a registry (registry_url) to prune there",
                    self.config
                        .image_name
                        .as_ref()
                        .map(|n| format!(" {n}"))
                        .unwrap_or_default()
                ),
            });
        };
        let Some(name) = self.config.image_name.clone() else {
            return Err(CoreError::config(format!(
                "{doing}: this Docker storage has no image name yet, and the image name is the \
                 repository of {registry} whose tags are its versions: set image_name (or \
                 persist first)"
            )));
        };
        let client = Registry::new(&registry, self.registry_auth()?);
        Ok((registry, name, client))
    }

    /// The tag of `location` when it is `<this registry>/<this image name>:<timestamp slug>`.
    fn version_tag<'a>(&self, location: &'a str, registry: &str, name: &str) -> Result<&'a str> {
        let refuse = |why: String| {
            CoreError::config(format!(
                "refusing to delete {location}: {why}. A version of this Docker storage is \
                 {registry}/{name}:<timestamp tag>, as list_versions lists it; nothing was deleted"
            ))
        };
        let Some(tag) = location
            .strip_prefix(registry)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix(':'))
        else {
            return Err(refuse(format!(
                "it is not an image of repository {registry}/{name}"
            )));
        };
        if parse_timestamp_slug(tag).is_none()
            || key::check_version_key(&format!("{}/{tag}", key::flow_slug(name))).is_err()
        {
            return Err(refuse(format!(
                "tag {tag:?} is not a flowstore timestamp tag"
            )));
        }
        Ok(tag)
    }

    /// Reads `name:tag`'s manifest (and, for an image manifest, its config's flow label).
    /// `None` when the tag went away meanwhile.
    async fn read_image(reg: &Registry, name: &str, tag: String) -> crate::Result<Option<Image>> {
        let (manifest, descriptor) = match reg.manifest(name, &tag).await {
            Ok(found) => found,
            Err(Error::Registry {
                status: Some(404), ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let (size, flows) = match manifest {
            Manifest::Image(m) => {
                let size = m.layers.iter().map(|l| l.size).sum();
                let config = match reg.blob(name, &m.config.digest).await {
                    Ok(bytes) => serde_json::from_slice::<ImageConfiguration>(&bytes).ok(),
                    Err(Error::Registry {
                        status: Some(404), ..
                    }) => None,
                    Err(e) => return Err(e),
                };
                let flows = config
                    .and_then(|c| c.config)
                    .and_then(|c| c.labels)
                    .and_then(|mut labels| labels.remove(FLOWS_LABEL))
                    .map(|l| {
                        l.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                (Some(size), flows)
            }
            Manifest::Index(_) => (None, Vec::new()),
        };
        Ok(Some(Image {
            tag,
            digest: descriptor.digest,
            size,
            flows,
        }))
    }

    /// [`Storage::list_versions`](flowstore_core::Storage::list_versions) for a storage with a
    /// registry: every timestamp tag of the image's repository (paged), each image's manifest
    /// read for its size and flows.
    pub(crate) async fn list_image_versions(
        &self,
        flow: Option<&str>,
    ) -> Result<Vec<StoredVersion>> {
        let (registry, name, reg) = self.version_repository("listing stored versions")?;
        let tags: Vec<String> = reg
            .tags(&name, TAG_PAGE)
            .await?
            .into_iter()
            .filter(|t| parse_timestamp_slug(t).is_some())
            .collect();
        let images: Vec<Option<Image>> = futures::stream::iter(
            tags.into_iter()
                .map(|tag| Self::read_image(&reg, &name, tag)),
        )
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
        let image_slug = name.rsplit('/').next().unwrap_or(&name).to_string();
        let wanted = flow.map(key::flow_slug);
        let mut known = self.tag_digests.lock().expect("tag digest cache lock");
        let mut versions: Vec<StoredVersion> = images
            .into_iter()
            .flatten()
            .map(|image| {
                known.insert(image.tag.clone(), image.digest.clone());
                let slug = match image.flows.as_slice() {
                    [one] => one.clone(),
                    _ => image_slug.clone(),
                };
                StoredVersion {
                    flow: None,
                    slug,
                    location: format!("{registry}/{name}:{}", image.tag),
                    size: image.size,
                    stored_at: parse_timestamp_slug(&image.tag),
                    bundle: false,
                }
            })
            .filter(|v| wanted.as_ref().is_none_or(|w| &v.slug == w))
            .collect();
        drop(known);
        versions.sort_by(|a, b| {
            b.stored_at
                .cmp(&a.stored_at)
                .then_with(|| b.location.cmp(&a.location))
        });
        Ok(versions)
    }

    /// [`Storage::delete_version`](flowstore_core::Storage::delete_version) for a storage with a
    /// registry: checks the location, resolves the tag's manifest digest, refuses when another
    /// tag names the same manifest, and deletes the manifest by digest.
    pub(crate) async fn delete_image_version(&self, version: &StoredVersion) -> Result<()> {
        let doing = format!("deleting stored version {}", version.location);
        let (registry, name, reg) = self.version_repository(&doing)?;
        let tag = self.version_tag(&version.location, &registry, &name)?;
        let Some(digest) = reg.manifest_digest(&name, tag).await? else {
            tracing::debug!(location = %version.location, "already gone");
            return Ok(());
        };
        // The API deletes a manifest by digest, and with it every tag that names it: refuse
        // when another tag would go too.
        let others: Vec<String> = reg
            .tags(&name, TAG_PAGE)
            .await?
            .into_iter()
            .filter(|t| t != tag)
            .collect();
        let cached: HashMap<String, Digest> = self
            .tag_digests
            .lock()
            .expect("tag digest cache lock")
            .clone();
        let resolved: Vec<(String, Option<Digest>)> =
            futures::stream::iter(others.into_iter().map(|t| {
                // A timestamp tag's manifest never changes (flowstore pushes each tag once), so
                // the digest listing read stays good; any other tag (`latest`) may move.
                let known = parse_timestamp_slug(&t).and_then(|_| cached.get(&t).cloned());
                let reg = &reg;
                let name = &name;
                async move {
                    match known {
                        Some(d) => Ok::<_, Error>((t, Some(d))),
                        None => {
                            let d = reg.manifest_digest(name, &t).await?;
                            Ok((t, d))
                        }
                    }
                }
            }))
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
        let mut sharing: Vec<String> = resolved
            .into_iter()
            .filter(|(_, d)| d.as_ref() == Some(&digest))
            .map(|(t, _)| t)
            .collect();
        if !sharing.is_empty() {
            sharing.sort();
            return Err(CoreError::config(format!(
                "refusing to delete {}: its manifest {digest} is also tagged {} in \
                 {registry}/{name}, and a registry deletes a manifest by digest, which would \
                 remove those tags (and the versions they are) too. Nothing was deleted; keep \
                 this version, or remove the other tag first",
                version.location,
                sharing
                    .iter()
                    .map(|t| format!("\"{t}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let deleted = reg.delete_manifest(&name, &digest).await?;
        self.tag_digests
            .lock()
            .expect("tag digest cache lock")
            .remove(tag);
        tracing::info!(location = %version.location, %digest, deleted, "deleted an image version");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamp_slugs_parse_back() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 2, 51, 19).unwrap()
            + chrono::Duration::microseconds(123_456);
        let slug = key::timestamp_slug(&t);
        assert_eq!(slug, "2026-11-24t02-51-19-123456-00-00");
        assert_eq!(parse_timestamp_slug(&slug), Some(t));
        let now = key::unique_timestamp();
        assert_eq!(parse_timestamp_slug(&key::timestamp_slug(&now)), Some(now));
        for other in [
            "latest",
            "1",
            "v1",
            "2026-11-24t02-51-19-123456-00-01",
            "2026-13-24t02-51-19-123456-00-00",
            "2026-11-24t25-51-19-123456-00-00",
            "2026-11-24T02-51-19-123456-00-00",
            "2026-11-24t02-51-19-12345a-00-00",
            "2026-11-24t02-51-19-123456-00-00x",
            "+026-11-24t02-51-19-123456-00-00",
            "",
        ] {
            assert_eq!(parse_timestamp_slug(other), None, "{other:?}");
        }
    }
}
