//! Bundle flows in an image: the manifest is the flow's file (like a serialized flow), and the
//! tree is one more image layer, under `{directory}/flows/{slug}.bundle/`, so the image runs it
//! and an agent outside the image fetches that one layer by digest.
//!
//! The layer is deterministic ([`layer::bundle`]): the same tree of the same flow gives the same
//! layer digest, and a push finds it in the registry and sends nothing. A changed file changes
//! the layer, which is then sent whole (layers are the registry's unit of reuse).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;

use bytes::Bytes;
use flowstore_core::bundle::{
    self as core_bundle, BlobCache, BundleInput, FetchOptions, FetchedBundle, Manifest,
    ScannedBundle, TransferReport,
};
use flowstore_core::storage::not_a_bundle;
use flowstore_core::{Error as CoreError, FlowContent, Progress, ProgressFn, Result, Storage};

use crate::config::TYPE_NAME;
use crate::error::Error;
use crate::oci::Digest;
use crate::registry::Registry;
use crate::storage::Docker;

/// A bundle waiting for `persist`: its tree goes into a layer of its own.
#[derive(Clone)]
pub(crate) struct StagedBundle {
    /// The flow's name.
    pub(crate) name: String,
    /// The tree's directory in the image (`{directory}/flows/{slug}.bundle`).
    pub(crate) dir: String,
    /// The scanned tree: the manifest and where each file is on this machine.
    pub(crate) scanned: ScannedBundle,
    /// Told how many bytes of the layer were pushed.
    pub(crate) progress: Option<ProgressFn>,
}

/// A failed blocking task, as a backend error naming what it was doing.
fn join_error(what: &str, e: tokio::task::JoinError) -> CoreError {
    CoreError::backend(TYPE_NAME, format!("{what}: {e}"))
}

impl Docker {
    /// The image directory of a bundle flow's tree: its flow file's location with `.bundle` in
    /// place of `.flow` (`/opt/flowstore/flows/etl.bundle` for `/opt/flowstore/flows/etl.flow`).
    pub fn bundle_dir(location: &str) -> String {
        format!(
            "{}.bundle",
            location.strip_suffix(".flow").unwrap_or(location)
        )
    }

    /// Scans the tree, stages its manifest as the flow's file (its digest recorded) and the tree
    /// for a layer of its own, built and pushed by `persist`.
    ///
    /// Errors as [`BundleInput::scan`] does, and with [`CoreError::NameConflict`] for a name the
    /// storage holds.
    pub(crate) async fn add_bundle(&mut self, input: BundleInput) -> Result<String> {
        let name = input.name.clone();
        let scan_input = input.clone();
        let scanned = tokio::task::spawn_blocking(move || scan_input.scan())
            .await
            .map_err(|e| join_error(&format!("scanning bundle \"{name}\""), e))??;
        let location = self.flow_location(&name);
        let manifest = &scanned.manifest;
        self.index
            .insert(&name, location.clone(), Some(manifest.digest()))?;
        // The manifest is the flow's file; its digest is the SHA-256 of its bytes.
        let file = flowstore_core::envelope::SealedFlow::from_envelope(
            name.clone(),
            manifest.bytes().clone(),
        );
        self.staged.push((name.clone(), location.clone(), file));
        tracing::debug!(flow = %name, files = manifest.files().len(), bytes = manifest.total_size(), "staged a bundle");
        self.staged_bundles.push(StagedBundle {
            dir: Docker::bundle_dir(&location),
            name,
            scanned,
            progress: input.progress,
        });
        Ok(location)
    }

    /// What pushing a bundle's layer moved: the layer (sent, or found in the registry) and the
    /// manifest, which goes into the image as the flow's file.
    pub(crate) fn record_bundle_push(
        &mut self,
        staged: &StagedBundle,
        layer: Digest,
        size: u64,
        sent: bool,
    ) {
        let mut report = TransferReport::default();
        if sent {
            report.add_object(size);
            if let Some(progress) = &staged.progress {
                progress(Progress {
                    what: "bundle bytes uploaded",
                    done: size,
                    total: Some(size),
                });
            }
        } else {
            report.reused_objects += 1;
            report.reused_bytes += size;
        }
        report.add_object(staged.scanned.manifest.bytes().len() as u64);
        tracing::info!(flow = %staged.name, layer = %layer, size, sent, "bundle layer pushed");
        self.config
            .bundle_layers
            .insert(staged.name.clone(), layer.to_string());
        self.index.transfers.insert(staged.name.clone(), report);
    }

    /// `get_bundle`: the verified manifest through `get_flow`; the files from the blob cache when
    /// it holds them all, else from the tree inside the image (when running in it), else from the
    /// bundle's layer fetched from the registry by digest; then the tree materialized.
    pub(crate) async fn fetch_bundle(
        &self,
        name: &str,
        dest: &Path,
        options: &FetchOptions,
    ) -> Result<FetchedBundle> {
        let fetched = self.get_flow(name).await?;
        let FlowContent::Bundle(manifest) = &fetched.content else {
            return Err(not_a_bundle(name, &fetched));
        };
        let manifest = manifest.clone();
        let location = fetched.location.clone();
        let dir = Docker::bundle_dir(&location);
        let cache = match &options.cache {
            Some(c) => c.clone(),
            None => BlobCache::from_env()?,
        };
        let (c, m) = (cache.clone(), manifest.clone());
        let (have, wanted) = tokio::task::spawn_blocking(move || {
            let wanted: BTreeSet<String> = m.files().iter().map(|f| f.digest.clone()).collect();
            let have: BTreeSet<String> = wanted
                .iter()
                .filter(|d| c.verify(d, false))
                .cloned()
                .collect();
            (have, wanted.len())
        })
        .await
        .map_err(|e| join_error("checking the blob cache", e))?;

        let mut report = TransferReport::default();
        if have.len() == wanted {
            tracing::debug!(flow = name, "every file of the bundle is in the blob cache");
            report.reused_objects = 1;
            report.reused_bytes = manifest.total_size();
        } else if Path::new(&location).is_file() && Path::new(&dir).is_dir() {
            // Inside the image: the tree is on this filesystem.
            let (c, m, d, flow) = (
                cache.clone(),
                manifest.clone(),
                dir.clone(),
                name.to_string(),
            );
            tokio::task::spawn_blocking(move || add_local_tree(&c, &m, &d, &have, &flow))
                .await
                .map_err(|e| join_error("reading the bundle's tree", e))??;
            report.reused_objects = 1;
            report.reused_bytes = manifest.total_size();
        } else {
            let (gz, layer_at) = self.fetch_bundle_layer(name, &dir).await?;
            report.add_object(gz.len() as u64);
            if let Some(progress) = &options.progress {
                progress(Progress {
                    what: "bundle bytes downloaded",
                    done: gz.len() as u64,
                    total: Some(gz.len() as u64),
                });
            }
            let (c, m, flow) = (cache.clone(), manifest.clone(), name.to_string());
            tokio::task::spawn_blocking(move || {
                unpack_layer(&gz, &dir, &m, &c, have, &flow, &layer_at)
            })
            .await
            .map_err(|e| join_error("unpacking the bundle's layer", e))??;
        }
        let (c, m, d) = (cache.clone(), manifest.clone(), dest.to_path_buf());
        tokio::task::spawn_blocking(move || core_bundle::materialize_from_cache(&c, &m, &d))
            .await
            .map_err(|e| join_error("materializing the bundle", e))??;
        Ok(FetchedBundle {
            name: name.to_string(),
            root: dest.to_path_buf(),
            entry: dest.join(manifest.entry()),
            manifest,
            transfer: report,
        })
    }

    /// The bundle's layer, fetched from the registry by the digest the reference records and
    /// verified; with where it was read from (`registry/image@digest`).
    async fn fetch_bundle_layer(&self, name: &str, dir: &str) -> Result<(Bytes, String)> {
        let (Some(registry_url), Some(image)) =
            (&self.config.registry_url, &self.config.image_name)
        else {
            return Err(CoreError::config(format!(
                "Bundle flow \"{name}\" is in a local image that was not pushed; fetch it inside the image (its tree is {dir})"
            )));
        };
        let Some(recorded) = self.config.bundle_layers.get(name) else {
            return Err(CoreError::invalid_reference(format!(
                "the reference records no image layer for bundle flow \"{name}\" (field bundle_layers): register the bundle again with this flowstore"
            )));
        };
        let digest: Digest = recorded.parse().map_err(|e| {
            CoreError::invalid_reference(format!(
                "the bundle layer recorded for flow \"{name}\" is not a digest: {e}"
            ))
        })?;
        let layer_at = format!("{registry_url}/{image}@{digest}");
        let reg = Registry::new(registry_url, self.registry_auth()?);
        let gz = reg.blob(image, &digest).await.map_err(|e| match e {
            e @ Error::DigestMismatch { .. } => CoreError::FlowCorrupt {
                flow: name.to_string(),
                location: layer_at.clone(),
                reason: format!("its bundle layer was altered in the registry: {e}"),
            },
            Error::Registry {
                status: Some(404), ..
            } => CoreError::FlowCorrupt {
                flow: name.to_string(),
                location: layer_at.clone(),
                reason: "its bundle layer is missing from the registry (deleted or garbage-collected): register the bundle again".to_string(),
            },
            other => other.into(),
        })?;
        tracing::info!(flow = name, layer = %layer_at, bytes = gz.len(), "fetched a bundle layer");
        Ok((gz, layer_at))
    }
}

/// A refused layer entry, as [`CoreError::FlowCorrupt`].
fn refused(flow: &str, location: &str, entry: &str, why: &str) -> CoreError {
    CoreError::FlowCorrupt {
        flow: flow.to_string(),
        location: location.to_string(),
        reason: format!(
            "its bundle layer holds the entry {entry:?}, which {why}; the whole bundle is refused"
        ),
    }
}

/// The directories a bundle's layer may hold (besides files): `dir`, its ancestors, and the
/// directories of the manifest's files under `dir` (all without a leading or trailing `/`).
fn allowed_dirs(prefix: &str, manifest: &Manifest) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    let mut acc = String::new();
    for segment in prefix.split('/').filter(|s| !s.is_empty()) {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(segment);
        dirs.insert(acc.clone());
    }
    for f in manifest.files() {
        for (i, _) in f.path.match_indices('/') {
            dirs.insert(format!("{prefix}/{}", &f.path[..i]));
        }
    }
    dirs
}

/// Unpacks a bundle's layer (a gzipped tar, already verified by digest) into `cache`: every
/// regular file under `dir` (the tree's image directory) that the manifest lists is written to a
/// temporary file of the cache and added with [`BlobCache::add_verified`] (which checks it
/// against the manifest's digest). Files whose digest is in `have` (verified in the cache) are
/// checked against the manifest but not written again.
///
/// Anything else refuses the whole bundle, before it is materialized: an absolute path, a `.` or
/// `..` segment, a path that is not UTF-8, a symlink, hard link, device, FIFO or any other
/// non-regular entry, a directory that is not on the way to a listed file, a file outside `dir`
/// or not listed, a file listed twice or with another size, and a listed file the layer lacks.
///
/// Errors with [`CoreError::FlowCorrupt`] naming flow `flow`, the layer's `location` and the
/// entry or file; [`CoreError::Io`] when the cache cannot be written.
pub(crate) fn unpack_layer(
    gz: &[u8],
    dir: &str,
    manifest: &Manifest,
    cache: &BlobCache,
    mut have: BTreeSet<String>,
    flow: &str,
    location: &str,
) -> Result<()> {
    let prefix = dir.trim_matches('/');
    let dirs = allowed_dirs(prefix, manifest);
    let listed: BTreeMap<&str, &core_bundle::ManifestFile> = manifest
        .files()
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    let not_a_tar = |e: std::io::Error| CoreError::FlowCorrupt {
        flow: flow.to_string(),
        location: location.to_string(),
        reason: format!("its bundle layer is not a readable gzipped tar ({e})"),
    };
    let tmp = cache.temp_dir()?;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    for (i, entry) in archive.entries().map_err(not_a_tar)?.enumerate() {
        let mut entry = entry.map_err(not_a_tar)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let Ok(text) = std::str::from_utf8(&raw) else {
            return Err(refused(flow, location, &shown, "is not UTF-8"));
        };
        if text.starts_with('/') {
            return Err(refused(flow, location, &shown, "is an absolute path"));
        }
        let path = text
            .strip_prefix("./")
            .unwrap_or(text)
            .trim_end_matches('/');
        if path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(refused(
                flow,
                location,
                &shown,
                "has an empty, `.` or `..` segment",
            ));
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            if dirs.contains(path) {
                continue;
            }
            return Err(refused(
                flow,
                location,
                &shown,
                "is a directory holding no file of the manifest",
            ));
        }
        if kind != tar::EntryType::Regular {
            let what = match kind {
                tar::EntryType::Symlink => "is a symlink",
                tar::EntryType::Link => "is a hard link",
                tar::EntryType::Char | tar::EntryType::Block => "is a device",
                tar::EntryType::Fifo => "is a FIFO",
                _ => "is not a regular file",
            };
            return Err(refused(flow, location, &shown, what));
        }
        let rel = if prefix.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(prefix).and_then(|r| r.strip_prefix('/'))
        };
        let Some(rel) = rel else {
            return Err(refused(
                flow,
                location,
                &shown,
                &format!("is outside the bundle's directory {dir}"),
            ));
        };
        let Some(file) = listed.get(rel) else {
            return Err(refused(
                flow,
                location,
                &shown,
                "is not a file of the bundle's manifest",
            ));
        };
        if !seen.insert(rel.to_string()) {
            return Err(refused(flow, location, &shown, "appears twice"));
        }
        let size = entry.header().size().map_err(not_a_tar)?;
        if size != file.size {
            return Err(CoreError::FlowCorrupt {
                flow: flow.to_string(),
                location: location.to_string(),
                reason: format!(
                    "its file {rel:?} is {size} bytes in the bundle layer, but the manifest records {}",
                    file.size
                ),
            });
        }
        if have.contains(&file.digest) {
            continue;
        }
        let out_path = tmp.path().join(i.to_string());
        let write_err = |e| CoreError::io(format!("writing {}", out_path.display()), e);
        let mut out = std::fs::File::create(&out_path).map_err(write_err)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = entry.read(&mut buf).map_err(not_a_tar)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(write_err)?;
        }
        drop(out);
        cache.add_verified(&out_path, &file.digest, flow, rel, location)?;
        have.insert(file.digest.clone());
    }
    if let Some(missing) = manifest.files().iter().find(|f| !seen.contains(&f.path)) {
        return Err(CoreError::FlowCorrupt {
            flow: flow.to_string(),
            location: location.to_string(),
            reason: format!(
                "its file {:?} is missing from the bundle layer",
                missing.path
            ),
        });
    }
    Ok(())
}

/// Inside the image: adds the files of the tree at `dir` to `cache`, each copied to a temporary
/// file of the cache and verified against the manifest ([`BlobCache::add_verified`]).
///
/// Errors with [`CoreError::FlowCorrupt`] naming a file that is missing, not a regular file, or
/// does not match the manifest; [`CoreError::Io`] when it cannot be copied.
fn add_local_tree(
    cache: &BlobCache,
    manifest: &Manifest,
    dir: &str,
    have: &BTreeSet<String>,
    flow: &str,
) -> Result<()> {
    let tmp = cache.temp_dir()?;
    let mut added: BTreeSet<&str> = BTreeSet::new();
    for (i, f) in manifest.files().iter().enumerate() {
        if have.contains(&f.digest) || added.contains(f.digest.as_str()) {
            continue;
        }
        let source = Path::new(dir).join(&f.path);
        let shown = source.display().to_string();
        let regular = std::fs::symlink_metadata(&source).is_ok_and(|m| m.is_file());
        if !regular {
            return Err(CoreError::FlowCorrupt {
                flow: flow.to_string(),
                location: dir.to_string(),
                reason: format!("its file {:?} is not a regular file at {shown}", f.path),
            });
        }
        let copy = tmp.path().join(i.to_string());
        std::fs::copy(&source, &copy)
            .map_err(|e| CoreError::io(format!("copying {shown} into the blob cache"), e))?;
        cache.add_verified(&copy, &f.digest, flow, &f.path, &shown)?;
        added.insert(&f.digest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowstore_core::cache::CachePolicy;

    const DIR: &str = "/opt/flowstore/flows/etl.bundle";

    /// A raw tar entry: path, type, contents.
    type RawEntry<'a> = (&'a str, tar::EntryType, &'a [u8]);

    fn tree() -> (tempfile::TempDir, ScannedBundle) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("flows")).unwrap();
        std::fs::create_dir_all(p.join("pkg/sub")).unwrap();
        std::fs::write(p.join("flows/etl.py"), b"import pkg\n").unwrap();
        std::fs::write(p.join("pkg/__init__.py"), b"").unwrap();
        std::fs::write(p.join("pkg/sub/deep.py"), b"X = 1\n").unwrap();
        std::fs::write(p.join("same-a.txt"), b"same\n").unwrap();
        std::fs::write(p.join("same-b.txt"), b"same\n").unwrap();
        std::fs::write(p.join("run.sh"), b"#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p.join("run.sh"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        let scanned = core_bundle::scan(p, "flows/etl.py").unwrap();
        (dir, scanned)
    }

    fn cache() -> (tempfile::TempDir, BlobCache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(dir.path(), CachePolicy::default());
        (dir, cache)
    }

    /// A gzipped tar of raw entries: (path, type, contents), the path written into the header
    /// as it is (no checks), as a hostile tool could.
    fn raw_layer(entries: &[RawEntry]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::default());
            let mut t = tar::Builder::new(gz);
            for (path, kind, bytes) in entries {
                let mut h = tar::Header::new_gnu();
                let name = &mut h.as_old_mut().name;
                name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_entry_type(*kind);
                h.set_mode(0o644);
                h.set_size(bytes.len() as u64);
                if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
                    h.set_link_name("/etc/passwd").unwrap();
                    h.set_size(0);
                }
                h.set_cksum();
                let data: &[u8] = if h.size().unwrap() == 0 { b"" } else { bytes };
                t.append(&h, data).unwrap();
            }
            t.into_inner().unwrap().finish().unwrap();
        }
        out
    }

    /// The real files of `scanned` under DIR, as raw entries.
    fn real_entries(scanned: &ScannedBundle) -> Vec<(String, Vec<u8>)> {
        scanned
            .files
            .iter()
            .map(|f| {
                (
                    format!("{}/{}", DIR.trim_start_matches('/'), f.file.path),
                    std::fs::read(&f.source).unwrap(),
                )
            })
            .collect()
    }

    fn unpack(gz: &[u8], scanned: &ScannedBundle, cache: &BlobCache) -> Result<()> {
        unpack_layer(
            gz,
            DIR,
            &scanned.manifest,
            cache,
            BTreeSet::new(),
            "ETL",
            "registry/etl@sha256:x",
        )
    }

    #[test]
    fn the_bundle_layer_is_deterministic_and_unpacks_into_the_cache() {
        let (_t, scanned) = tree();
        let one = crate::layer::bundle(DIR, &scanned).unwrap();
        let two = crate::layer::bundle(DIR, &scanned).unwrap();
        assert_eq!(one.gz, two.gz, "same tree, same layer bytes");
        assert_eq!(one.diff_id, two.diff_id);
        // Headers: fixed times and owners, the manifest's modes, directories first.
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&one.gz[..]));
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.username().unwrap(), Some(""));
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mode = h.mode().unwrap();
            match path.as_str() {
                p if p.ends_with("run.sh") => assert_eq!(mode, 0o755, "{p}"),
                p if h.entry_type().is_dir() => assert_eq!(mode, 0o755, "{p}"),
                p => assert_eq!(mode, 0o644, "{p}"),
            }
            seen.push(path);
        }
        assert_eq!(
            &seen[..5],
            [
                "opt/",
                "opt/flowstore/",
                "opt/flowstore/flows/",
                "opt/flowstore/flows/etl.bundle/",
                "opt/flowstore/flows/etl.bundle/flows/"
            ]
        );
        assert!(seen.contains(&"opt/flowstore/flows/etl.bundle/pkg/sub/deep.py".to_string()));

        let (_c, cache) = cache();
        unpack(&one.gz, &scanned, &cache).unwrap();
        for f in scanned.manifest.files() {
            assert!(cache.verify(&f.digest, false), "{}", f.path);
        }
        // An archive of the tree alone (Engine builds ADD it at the bundle's directory).
        let alone = crate::layer::bundle("", &scanned).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&alone.gz[..]));
        let first = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(first.path().unwrap().to_string_lossy(), "flows/");
    }

    #[test]
    fn a_file_changed_after_the_scan_fails_the_layer() {
        let (t, scanned) = tree();
        std::fs::write(t.path().join("pkg/sub/deep.py"), b"X = 2\n").unwrap();
        let err = crate::layer::bundle(DIR, &scanned).unwrap_err().to_string();
        assert!(err.contains("\"pkg/sub/deep.py\" changed"), "{err}");
    }

    #[test]
    fn entries_not_in_the_manifest_are_refused() {
        let (_t, scanned) = tree();
        let real = real_entries(&scanned);
        let with = |extra: RawEntry| {
            let mut entries: Vec<RawEntry> = real
                .iter()
                .map(|(p, b)| (p.as_str(), tar::EntryType::Regular, b.as_slice()))
                .collect();
            entries.push(extra);
            raw_layer(&entries)
        };
        let cases: [(RawEntry, &str); 8] = [
            (
                (
                    "opt/flowstore/flows/etl.bundle/evil.sh",
                    tar::EntryType::Regular,
                    b"rm -rf /",
                ),
                "\"opt/flowstore/flows/etl.bundle/evil.sh\", which is not a file of the bundle's manifest",
            ),
            (
                (
                    "opt/flowstore/flows/etl.bundle/../../../../tmp/evil",
                    tar::EntryType::Regular,
                    b"x",
                ),
                "`..` segment",
            ),
            (("/etc/cron.d/evil", tar::EntryType::Regular, b"x"), "absolute path"),
            (
                (
                    "opt/flowstore/flows/etl.bundle/link",
                    tar::EntryType::Symlink,
                    b"",
                ),
                "is a symlink",
            ),
            (
                (
                    "opt/flowstore/flows/etl.bundle/hard",
                    tar::EntryType::Link,
                    b"",
                ),
                "is a hard link",
            ),
            (
                (
                    "opt/flowstore/flows/etl.bundle/dev",
                    tar::EntryType::Char,
                    b"",
                ),
                "is a device",
            ),
            (
                ("etc/passwd", tar::EntryType::Regular, b"root::0:0::/:/bin/sh"),
                "outside the bundle's directory",
            ),
            (
                (
                    "opt/flowstore/flows/etl.bundle/stray/",
                    tar::EntryType::Directory,
                    b"",
                ),
                "directory holding no file",
            ),
        ];
        for (extra, expected) in cases {
            let (_c, cache) = cache();
            let err = unpack(&with(extra), &scanned, &cache).unwrap_err();
            assert!(matches!(err, CoreError::FlowCorrupt { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains(expected), "{}: {text}", extra.0);
            assert!(text.contains("\"ETL\""), "{text}");
        }
    }

    #[test]
    fn altered_missing_and_duplicate_files_are_refused_naming_the_file() {
        let (_t, scanned) = tree();
        let real = real_entries(&scanned);
        // The genuine entries with the file ending in `suffix` given other bytes (or left out).
        let changed = |suffix: &str, bytes: Option<&[u8]>| -> Vec<(String, Vec<u8>)> {
            real.iter()
                .filter_map(|(p, b)| match (p.ends_with(suffix), bytes) {
                    (false, _) => Some((p.clone(), b.clone())),
                    (true, Some(other)) => Some((p.clone(), other.to_vec())),
                    (true, None) => None,
                })
                .collect()
        };
        let layer = |entries: &[(String, Vec<u8>)]| {
            let raw: Vec<RawEntry> = entries
                .iter()
                .map(|(p, b)| (p.as_str(), tar::EntryType::Regular, b.as_slice()))
                .collect();
            raw_layer(&raw)
        };
        // Same size, other bytes: the cache's verification names the file.
        let altered = changed("deep.py", Some(b"X = 9\n"));
        let (_c, cache) = cache();
        let err = unpack(&layer(&altered), &scanned, &cache).unwrap_err();
        assert!(matches!(err, CoreError::FlowCorrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("pkg/sub/deep.py"), "{err}");
        // Another size.
        let longer = changed("deep.py", Some(b"X = 10\n"));
        let err = unpack(&layer(&longer), &scanned, &cache).unwrap_err();
        assert!(
            err.to_string().contains("\"pkg/sub/deep.py\" is 7 bytes"),
            "{err}"
        );
        // Missing.
        let missing = changed("same-b.txt", None);
        let err = unpack(&layer(&missing), &scanned, &cache).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"same-b.txt\" is missing from the bundle layer"),
            "{err}"
        );
        // Twice.
        let mut twice = real.clone();
        twice.push(real[0].clone());
        let err = unpack(&layer(&twice), &scanned, &cache).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
        // Not a tar at all.
        let err = unpack(b"not gzip", &scanned, &cache).unwrap_err();
        assert!(
            err.to_string().contains("not a readable gzipped tar"),
            "{err}"
        );
    }

    #[test]
    fn the_tree_inside_the_image_is_verified_file_by_file() {
        let (t, scanned) = tree();
        let (_c, cache) = cache();
        let dir = t.path().to_string_lossy().into_owned();
        add_local_tree(&cache, &scanned.manifest, &dir, &BTreeSet::new(), "ETL").unwrap();
        for f in scanned.manifest.files() {
            assert!(cache.verify(&f.digest, false), "{}", f.path);
        }
        std::fs::write(t.path().join("flows/etl.py"), b"import os\n").unwrap();
        let (_c2, fresh) = self::cache();
        let err =
            add_local_tree(&fresh, &scanned.manifest, &dir, &BTreeSet::new(), "ETL").unwrap_err();
        assert!(matches!(err, CoreError::FlowCorrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("flows/etl.py"), "{err}");
    }
}
