//! Engine builds through `bollard`: a generated Dockerfile and build context, `docker build` with
//! no network, a health-check step that verifies every flow's SHA-256 inside the image (and runs
//! the user's load command), then tag, push, and removal of the local image.
//!
//! Each bundle's tree is an archive in the context, `ADD`ed (unpacked) at its directory: a layer
//! of its own, found after the push through the image config's history and recorded by digest.

use std::collections::{BTreeMap, HashMap};
use std::io::Seek;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, PushImageOptionsBuilder, RemoveImageOptions,
};
use bollard::Docker as Engine;
use bytes::Bytes;
use flowstore_core::secret::ExposeSecret;
use flowstore_core::Progress;
use futures::StreamExt;

use crate::bundles::StagedBundle;
use crate::config::TlsFiles;
use crate::error::{Error, Result};
use crate::layer::{Content, ImageFile, LayerFile, TarWriter};
use crate::oci::{ImageConfiguration, Manifest};
use crate::storage::Docker;

/// An [`Error::Engine`] keeping the client's error, with the daemon's status when it answered.
fn engine_error(what: impl Into<String>, e: bollard::errors::Error) -> Error {
    use bollard::errors::Error as E;
    let status = match &e {
        E::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    };
    let unreachable = matches!(
        e,
        E::IOError { .. }
            | E::RequestTimeoutError
            | E::HyperResponseError { .. }
            | E::HyperLegacyError { .. }
            | E::SocketNotFoundError(_)
    );
    Error::Engine {
        what: what.into(),
        message: e.to_string(),
        status,
        unreachable,
        source: Some(Box::new(e)),
    }
}

/// An [`Error::Engine`] from the daemon's own text in a stream (no client error to keep).
fn daemon_error(what: impl Into<String>, message: String) -> Error {
    Error::Engine {
        what: what.into(),
        message,
        status: None,
        unreachable: false,
        source: None,
    }
}

/// Connects to `base_url`, `DOCKER_HOST`, or the local socket; over TLS with `DOCKER_CERT_PATH`
/// when `DOCKER_TLS_VERIFY` is set.
///
/// Errors with [`Error::Engine`] when the daemon cannot be reached or its API version not
/// negotiated.
pub async fn connect(base_url: Option<&str>) -> Result<Engine> {
    connect_tls(base_url, None).await
}

/// [`connect`] with explicit TLS files for a `tcp://`/`https://` host.
///
/// Errors as [`connect`] does.
pub async fn connect_tls(base_url: Option<&str>, tls: Option<&TlsFiles>) -> Result<Engine> {
    let host = base_url
        .map(str::to_string)
        .or_else(|| std::env::var("DOCKER_HOST").ok());
    let env_tls = std::env::var_os("DOCKER_TLS_VERIFY")
        .filter(|v| !v.is_empty())
        .and(std::env::var_os("DOCKER_CERT_PATH"))
        .map(TlsFiles::in_dir);
    let tls = tls.cloned().or(env_tls);
    let engine = match (host.as_deref(), tls) {
        (Some(h), _) if h.starts_with("unix://") => {
            Engine::connect_with_unix(h, 300, bollard::API_DEFAULT_VERSION)
        }
        (Some(h), Some(t)) => {
            Engine::connect_with_ssl(h, &t.key, &t.cert, &t.ca, 300, bollard::API_DEFAULT_VERSION)
        }
        (Some(h), None) => Engine::connect_with_http(h, 300, bollard::API_DEFAULT_VERSION),
        (None, _) => Engine::connect_with_local_defaults(),
    }
    .map_err(|e| engine_error("connecting", e))?;
    engine
        .negotiate_version()
        .await
        .map_err(|e| engine_error("negotiating the API version", e))
}

/// The generated Dockerfile of a storage's image.
pub fn dockerfile(s: &Docker) -> String {
    let b = &s.build;
    let dir = s.config.directory.trim_end_matches('/');
    let mut lines = Vec::new();
    match &b.dockerfile {
        Some(custom) => lines.push(custom.clone()),
        None => lines.push(format!(
            "FROM {}",
            b.base_image.as_deref().unwrap_or("python:3-slim")
        )),
    }
    for (k, v) in &b.env_vars {
        lines.push(format!(
            "ENV {k}={}",
            serde_json::to_string(v).unwrap_or_default()
        ));
    }
    if !b.dependencies.is_empty() {
        lines.push(format!(
            "RUN {}",
            b.install_command
                .replace("{packages}", &b.dependencies.join(" "))
        ));
    }
    // Each bundle's tree: one layer, ADDed (unpacked) at its directory.
    for (i, bundle) in s.staged_bundles.iter().enumerate() {
        let json = serde_json::to_string(&[bundle_archive(i), format!("{}/", bundle.dir)])
            .unwrap_or_default();
        lines.push(format!("ADD {json}"));
    }
    // Slugs are `[a-z0-9-]`: nothing to quote. `list_versions` reads it (one flow: its slug).
    lines.push(format!(
        "LABEL {}=\"{}\"",
        crate::versions::FLOWS_LABEL,
        s.flows_label()
    ));
    lines.push("COPY layer/ /".to_string());
    for c in &b.extra_dockerfile_commands {
        lines.push(c.clone());
    }
    let mut check = format!("RUN sha256sum -c {dir}/flows.sha256");
    if let Some(load) = &b.load_command {
        check.push_str(&format!(" && {load}"));
    }
    lines.push(check);
    lines.join("\n") + "\n"
}

/// Where bundle `i`'s tree archive is in the build context.
fn bundle_archive(i: usize) -> String {
    format!("bundles/{i}.tar.gz")
}

/// The build context, written to a temporary file: the Dockerfile, the flows layer's files
/// under `layer/` (each flow read from its source as it is written: a flow sealed from a file is
/// never held in memory), and each bundle's tree archive (`archives`, in the order of
/// `staged_bundles`). Returns the file and its size.
///
/// Errors with [`flowstore_core::Error::Io`] naming the flow or file that could not be read (a
/// flow whose file changed after it was sealed included) or the temporary file that could not
/// be written.
fn context(s: &Docker, image: &str, archives: &[LayerFile]) -> Result<(std::fs::File, u64)> {
    let io = |e| {
        flowstore_core::Error::io(
            format!(
                "writing the build context of {image} to a temporary file in {} (set TMPDIR to a directory with room for it)",
                std::env::temp_dir().display()
            ),
            e,
        )
    };
    let mut entries = vec![ImageFile {
        path: "Dockerfile".to_string(),
        mode: 0o644,
        content: Content::Bytes(Bytes::from(dockerfile(s))),
        what: "the Dockerfile".to_string(),
    }];
    for mut file in s.layer_files()? {
        file.path = format!("layer/{}", file.path.trim_start_matches('/'));
        entries.push(file);
    }
    let mut t = TarWriter::new(std::io::BufWriter::with_capacity(
        1 << 16,
        tempfile::tempfile().map_err(io)?,
    ));
    crate::layer::write_entries(&mut t, &entries, &format!("the build context of {image}"))?;
    for (i, archive) in archives.iter().enumerate() {
        t.file(
            &bundle_archive(i),
            0o644,
            archive.size,
            archive.reader().map_err(io)?,
        )
        .map_err(io)?;
    }
    let mut file = t
        .finish()
        .map_err(io)?
        .into_inner()
        .map_err(|e| io(e.into_error()))?;
    let size = file.stream_position().map_err(io)?;
    file.rewind().map_err(io)?;
    Ok((file, size))
}

/// `Step 3/7 : RUN …` → (3, 7): how far a classic-builder build is.
fn build_step(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim_start().strip_prefix("Step ")?;
    let (fraction, _) = rest.split_once(' ')?;
    let (done, total) = fraction.split_once('/')?;
    Some((done.parse().ok()?, total.parse().ok()?))
}

/// Builds, tags and pushes `s` as `name:tag`; returns the pushed manifest digest (`None`
/// without a registry) and, for a pushed image, the layer holding each bundle's tree (flow name
/// → layer digest).
/// Build steps and pushed layers are reported to the storage's progress callback; every build
/// line goes to `tracing` (target `flowstore_docker::build`).
///
/// Errors with [`Error::BuildFailed`] (the daemon's text and the tail of the build output) when
/// a step fails, health check included; [`Error::Engine`] when the daemon is unreachable or
/// refuses the push.
pub(crate) async fn build_and_push(
    s: &Docker,
    name: &str,
    tag: &str,
) -> Result<(Option<String>, BTreeMap<String, String>)> {
    let engine = connect_tls(s.build.base_url.as_deref(), s.build.tls.as_ref()).await?;
    let mut archives = Vec::new();
    for staged in &s.staged_bundles {
        let scanned = staged.scanned.clone();
        let built = tokio::task::spawn_blocking(move || crate::layer::bundle_file("", &scanned))
            .await
            .map_err(|e| {
                flowstore_core::Error::backend(
                    crate::TYPE_NAME,
                    format!("archiving the tree of bundle \"{}\": {e}", staged.name),
                )
            })??;
        archives.push(built);
    }
    let image = s.image_ref().expect("named before building");
    // Written whole before the daemon is sent a byte: a flow that cannot be read (its file
    // changed after it was sealed) fails here, with nothing built or pushed.
    let (context_file, context_size) = {
        let s2 = s.clone();
        let target = image.clone();
        tokio::task::spawn_blocking(move || context(&s2, &target, &archives))
            .await
            .map_err(|e| {
                flowstore_core::Error::backend(
                    crate::TYPE_NAME,
                    format!("writing the build context of {image}: {e}"),
                )
            })??
    };
    tracing::debug!(image = %image, bytes = context_size, "wrote the build context");
    let mut opts = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(&image)
        .rm(true)
        .forcerm(true)
        .networkmode("none");
    if !s.build.build_args.is_empty() {
        opts = opts.buildargs(
            &s.build
                .build_args
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    }
    let mut stream = engine.build_image(
        opts.build(),
        None,
        Some(bollard::body_try_stream(crate::layer::file_stream(
            context_file,
        ))),
    );
    let mut log = String::new();
    let failed = |daemon: String, log: &str| Error::BuildFailed {
        image: image.clone(),
        daemon,
        log_tail: tail(log),
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(line) = info.stream.as_deref().filter(|l| !l.trim().is_empty()) {
                    tracing::info!(target: "flowstore_docker::build", "{}", line.trim_end());
                    if let Some((done, total)) = build_step(line) {
                        s.report(Progress {
                            what: "build steps",
                            done,
                            total: Some(total),
                        });
                    }
                    log.push_str(line);
                }
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    return Err(failed(e, &log));
                }
            }
            Err(e) => return Err(failed(e.to_string(), &log)),
        }
    }
    let Some(registry_url) = &s.config.registry_url else {
        tracing::warn!(image = %image, "no registry_url: the image stays local and is not pushed");
        return Ok((None, BTreeMap::new()));
    };
    let auth = s.registry_auth()?;
    let creds = auth.as_ref().map(|c| DockerCredentials {
        username: Some(c.username.clone()),
        password: Some(c.password.expose_secret().to_string()),
        serveraddress: Some(registry_url.clone()),
        ..Default::default()
    });
    let repo = format!("{registry_url}/{name}");
    let mut push = engine.push_image(
        &repo,
        Some(PushImageOptionsBuilder::new().tag(tag).build()),
        creds,
    );
    let pushing = format!("pushing {image}");
    let mut layers_done = 0;
    while let Some(item) = push.next().await {
        match item {
            Ok(info) => {
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    return Err(daemon_error(pushing, e));
                }
                if let Some(status) = info.status {
                    if status == "Pushed" || status == "Layer already exists" {
                        layers_done += 1;
                        s.report(Progress {
                            what: "layers pushed",
                            done: layers_done,
                            total: None,
                        });
                    }
                    tracing::debug!(target: "flowstore_docker::push", "{status}");
                }
            }
            Err(e) => return Err(engine_error(pushing, e)),
        }
    }
    let reg = crate::registry::Registry::new(registry_url, auth);
    let (manifest, pushed) = reg.manifest(name, tag).await?;
    let bundle_layers = if s.staged_bundles.is_empty() {
        BTreeMap::new()
    } else {
        find_bundle_layers(&reg, name, &image, manifest, &s.staged_bundles).await?
    };
    if !s.build.local_image {
        if let Err(e) = engine
            .remove_image(&image, None::<RemoveImageOptions>, None)
            .await
        {
            tracing::warn!(image = %image, error = %e, "pushed, but the local image could not be removed");
        }
    }
    Ok((Some(pushed.digest.to_string()), bundle_layers))
}

/// The pushed layers holding the bundles' trees (flow name → layer digest), found through the
/// image config's history: its entries that made a layer line up with the manifest's layers
/// (matched from the top, so a base image with a shorter history does not shift them), and the
/// entry of bundle `i` is the `ADD` of its archive at its directory.
///
/// Errors with [`Error::Config`] when the pushed manifest is an index, its config does not parse,
/// or no history entry says which layer holds a bundle; [`Error::Registry`] when the config
/// cannot be read.
async fn find_bundle_layers(
    reg: &crate::registry::Registry,
    name: &str,
    image: &str,
    manifest: Manifest,
    bundles: &[StagedBundle],
) -> Result<BTreeMap<String, String>> {
    let Some(manifest) = manifest.into_image() else {
        return Err(Error::config(format!(
            "the pushed image {image} is a multi-platform index, not the image that was built"
        )));
    };
    let config_bytes = reg.blob(name, &manifest.config.digest).await?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes).map_err(|e| {
        Error::config(format!(
            "the config {} of the pushed image {image} is not a valid image config: {e}",
            manifest.config.digest
        ))
    })?;
    let made_layers: Vec<&str> = config
        .history
        .iter()
        .filter(|h| h.empty_layer != Some(true))
        .map(|h| h.created_by.as_deref().unwrap_or(""))
        .collect();
    let mut found = BTreeMap::new();
    for (i, bundle) in bundles.iter().enumerate() {
        let target = format!("{}/", bundle.dir);
        // Classic builder: `ADD file:<hash> in <dir>/`; BuildKit: `ADD <archive> <dir>/`.
        let classic = format!(" in {target}");
        let buildkit = format!("{} {target}", bundle_archive(i));
        let hit = made_layers
            .iter()
            .rev()
            .zip(manifest.layers.iter().rev())
            .find(|(by, _)| {
                by.contains("ADD ") && (by.contains(&classic) || by.contains(&buildkit))
            });
        let Some((_, layer)) = hit else {
            return Err(Error::config(format!(
                "the pushed image {image} does not say which layer holds bundle \"{}\" (no history entry ADDs {target}); build it with BuildMode::Daemonless",
                bundle.name
            )));
        };
        tracing::debug!(flow = %bundle.name, layer = %layer.digest, "found the bundle's layer");
        found.insert(bundle.name.clone(), layer.digest.to_string());
    }
    Ok(found)
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::build_step;

    #[test]
    fn build_steps_are_read_from_the_classic_builder_output() {
        assert_eq!(build_step("Step 3/7 : RUN sha256sum -c x"), Some((3, 7)));
        assert_eq!(build_step(" ---> Running in 1234"), None);
        assert_eq!(build_step("Step x/7 : FROM y"), None);
    }
}
