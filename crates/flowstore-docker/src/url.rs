//! `docker://` storage URLs, so `flowstore register --storage docker://…` can build an image,
//! and the options they (and [`DockerBuilder::with_config`]) take.
//!
//! `docker://REGISTRY/NAME[:TAG][?OPTIONS]`; `docker:///NAME` builds a local image with no
//! registry (Engine only). The URL is parsed once with the `url` crate; options are
//! `&`-separated `key=value` pairs, form-decoded (`%20` or `+` for a space, `%2B` for a plus,
//! `%26` for an `&`), each applied with [`DockerBuilder::with_config`] in order:
//!
//! | option | meaning |
//! |---|---|
//! | `mode=engine` (default) / `mode=daemonless` | how the image is built ([`BuildMode`](crate::BuildMode)) |
//! | `base_image=REGISTRY/NAME:TAG` | the image to build on |
//! | `dockerfile=PATH` | a whole Dockerfile (a host file, read now) instead of `base_image` |
//! | `directory=DIR` | where flows go in the image (default `/opt/flowstore`) |
//! | `file=HOST:IMAGE` | copy an absolute host path into the image (repeatable) |
//! | `env=KEY=VALUE` | an environment variable of the image (repeatable) |
//! | `build_arg=KEY=VALUE` | a build argument (repeatable) |
//! | `dependency=PKG` | a package to install (repeatable) with `install_command=…{packages}…` |
//! | `extra_command=LINE` | an extra Dockerfile line (repeatable) |
//! | `load_command=CMD` | run in the image at build to prove the flows load |
//! | `local_image=true` | keep the local image after pushing |
//! | `base_url=unix:///…` | the Docker Engine (default `DOCKER_HOST`, else the local socket) |
//! | `platform=arm64` | the variant of a multi-platform base image (daemonless; default: this machine's) |
//! | `username_secret=NAME&password_secret=NAME` | registry credentials from the secret sources (recorded by name; also `registry_username_secret`/`registry_password_secret`) |
//! | `registry_url=`, `image_name=`, `image_tag=` | override what the URL's host and path say |
//! | `path=IMAGE_PATH&stored_as_script=true` | script mode with a script already in the image |
//! | `label=L` (repeatable, or `a,b`), `add_default_labels=false`, `secret=NAME` | as for every storage |
//!
//! Registry credentials never go in the URL: a URL with `user:password@` is refused. Give them
//! as secret names (above) or to [`DockerBuilder::username`]/[`DockerBuilder::password`].
//!
//! In script mode (the context's script path) the script is copied to `{directory}/flows/` and
//! stored as a script, its SHA-256 checked by the health check and at fetch
//! ([`DockerBuilder::script_file`]).

use flowstore_core::raw::config::{parse_url, url_path};
use flowstore_core::{Error as CoreError, OpenContext};

use crate::builder::DockerBuilder;
use crate::error::{Error, Result};
use crate::storage::Docker;

/// What a `docker://` URL looks like, for messages.
const EXAMPLE: &str =
    "docker://REGISTRY/NAME[:TAG][?OPTION=VALUE&…] (or docker:///NAME for a local image)";

/// The URL error for `url` (with any `user:password@` left out): the problem, and its cause kept.
fn url_error(url: &str, e: Error) -> Error {
    let core: CoreError = e.into();
    let message = format!("Storage URL \"{url}\": {core}");
    let source = match core {
        CoreError::Config { source, .. }
        | CoreError::NotFound { source, .. }
        | CoreError::PermissionDenied { source, .. }
        | CoreError::Backend { source, .. } => source,
        CoreError::Io { source, .. } => Some(Box::new(source) as _),
        _ => None,
    };
    let mut e = CoreError::config(message);
    if let Some(cause) = source {
        e = e.with_source(cause);
    }
    e.into()
}

impl DockerBuilder {
    /// A builder from a `docker://REGISTRY/NAME[:TAG][?OPTIONS]` URL: the host (and port) is the
    /// registry, the path the image name and tag, and every query pair goes through
    /// [`with_config`](Self::with_config) (see the [module docs](crate::url) for the options).
    ///
    /// Errors with [`Error::Config`] naming the URL and what is wrong: not `docker://`, no image
    /// name, credentials or a fragment in the URL, an unknown option or a value that does not
    /// fit.
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = parse_url(url, &["docker"], EXAMPLE)?;
        // Shown in messages without any credentials it holds.
        let shown = {
            let mut u = parsed.clone();
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        };
        let bad = |why: &str| {
            url_error(
                &shown,
                Error::config(format!("{why}; it should look like {EXAMPLE}")),
            )
        };
        if parsed.cannot_be_a_base() {
            return Err(bad("it has no // after docker:"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "registry credentials do not go in the URL: name their secrets with username_secret and password_secret",
            ));
        }
        if parsed.fragment().is_some() {
            return Err(bad("it has a #fragment"));
        }
        let registry =
            parsed
                .host_str()
                .filter(|h| !h.is_empty())
                .map(|host| match parsed.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_string(),
                });
        let path = url_path(&parsed).ok_or_else(|| bad("no image name"))?;
        let (name, tag) = match path.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (path.as_str(), None),
        };
        if name.is_empty() || tag.is_some_and(str::is_empty) {
            return Err(bad("no image name"));
        }
        let mut builder = DockerBuilder::new().image(name, tag);
        if let Some(registry) = registry {
            builder = builder.registry_url(registry);
        }
        builder
            .with_configs(parsed.query_pairs())
            .map_err(|e| url_error(&shown, e))
    }
}

impl Docker {
    /// Opens a `docker://` URL as `flowstore register --storage` does: the URL
    /// ([`DockerBuilder::from_url`]), then the context's options, its secret sources and progress
    /// callback, and in script mode its script ([`DockerBuilder::script_file`]).
    ///
    /// Errors with [`CoreError::Config`] naming the URL and what is wrong with it (see
    /// [`DockerBuilder::from_url`] and [`DockerBuilder::build`]).
    pub fn from_url(url: &str, ctx: &OpenContext) -> flowstore_core::Result<Docker> {
        let mut builder = DockerBuilder::from_url(url)?
            .with_configs(ctx.options.iter().map(|(k, v)| (k, v)))
            .map_err(|e| url_error(url, e))?
            .secrets(ctx.secrets.clone());
        if let Some(progress) = &ctx.progress {
            builder = builder.progress(progress.clone());
        }
        if let Some(script) = &ctx.script_path {
            builder = builder.script_file(script);
        }
        Ok(builder.build().map_err(|e| url_error(url, e))?)
    }
}

#[cfg(test)]
mod tests {
    use flowstore_core::raw::config::BackendConfig;
    use flowstore_core::Storage;

    use super::*;
    use crate::config::BuildMode;

    fn open(url: &str) -> flowstore_core::Result<Docker> {
        Docker::from_url(url, &OpenContext::default())
    }

    #[test]
    fn registry_name_tag_and_options() {
        let d = open("docker://127.0.0.1:5000/team/etl:v1?mode=daemonless&base_image=127.0.0.1:5000/base/busybox:1&env=A=b%20c&env=B=%2B&directory=/srv/f&local_image=true&label=x,y&dependency=a&dependency=b&mode=engine").unwrap();
        assert_eq!(d.config().registry_url.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(d.config().image_name.as_deref(), Some("team/etl"));
        assert_eq!(d.config().image_tag.as_deref(), Some("v1"));
        assert_eq!(d.config().directory, "/srv/f");
        assert_eq!(d.build.mode, BuildMode::Engine, "the last mode wins");
        assert_eq!(
            d.build.base_image.as_deref(),
            Some("127.0.0.1:5000/base/busybox:1")
        );
        assert_eq!(d.build.env_vars["A"], "b c");
        assert_eq!(d.build.env_vars["B"], "+");
        assert_eq!(d.build.dependencies, ["a", "b"]);
        assert!(d.build.local_image);
        assert_eq!(d.labels(), ["x", "y"]);
        assert_eq!(d.image_ref().unwrap(), "127.0.0.1:5000/team/etl:v1");
    }

    #[test]
    fn no_registry_and_no_tag() {
        let d = open("docker:///etl?local_image").unwrap();
        assert_eq!(d.config().registry_url, None);
        assert_eq!(d.config().image_name.as_deref(), Some("etl"));
        assert_eq!(d.config().image_tag, None);
        assert_eq!(d.build.mode, BuildMode::Engine);
        assert!(d.build.local_image, "a bare local_image means true");
    }

    #[test]
    fn bad_urls_name_the_problem() {
        for (url, needle) in [
            ("docker://127.0.0.1:5000", "no image name"),
            ("docker://r/x:", "no image name"),
            ("docker:x", "no // after docker:"),
            ("docker://r/x?mode=fast", "mode \"fast\""),
            ("docker://r/x?colour=red", "unknown option \"colour\""),
            ("docker://r/x?env=NOEQUALS", "env=KEY=VALUE"),
            ("docker://r/x?file=/only/host", "file=HOST_PATH:IMAGE_PATH"),
            ("docker://r/x?username_secret=U", "go together"),
            ("docker://r/x?local_image=maybe", "true or false"),
            ("docker://r/x#frag", "fragment"),
            (
                "docker://r/x?dockerfile=/no/such/Dockerfile",
                "reading dockerfile",
            ),
            ("docker://r/x?mode=daemonless", "needs a base_image"),
            (
                "docker://r/x?mode=daemonless&base_image=python:3",
                "does not name its registry",
            ),
            ("s3://r/x", "takes docker://"),
        ] {
            let e = open(url).unwrap_err();
            assert!(matches!(e, CoreError::Config { .. }), "{url}: {e:?}");
            let e = e.to_string();
            assert!(e.contains(needle), "{url}: {e}");
            assert!(e.contains(url), "{url}: the error names the URL: {e}");
        }
        let e = open("docker://r/x?dockerfile=/no/such/Dockerfile").unwrap_err();
        assert!(
            std::error::Error::source(&e).is_some(),
            "the I/O error is kept: {e:?}"
        );
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_echoing_them() {
        let e = open("docker://me:hunter2-c4n4ry@r:5000/x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("username_secret") && e.contains("r:5000/x"),
            "{e}"
        );
        assert!(!e.contains("c4n4ry"), "{e}");
    }

    #[test]
    fn the_unknown_option_error_lists_every_option() {
        let e = open("docker://r/x?colour=red").unwrap_err().to_string();
        for key in crate::BuildConfig::OPTIONS
            .iter()
            .chain(crate::DockerConfig::OPTIONS.iter().map(|(k, _)| k))
            .chain(["label", "add_default_labels", "secret"].iter())
        {
            assert!(e.contains(key), "{key} missing from: {e}");
        }
    }

    #[test]
    fn context_options_come_after_the_query() {
        let ctx = OpenContext {
            options: vec![
                ("image_tag".into(), "v2".into()),
                ("label".into(), "late".into()),
            ],
            ..OpenContext::default()
        };
        let d = Docker::from_url("docker://r:5000/etl:v1?label=early", &ctx).unwrap();
        assert_eq!(d.config().image_tag.as_deref(), Some("v2"));
        assert_eq!(d.labels(), ["early", "late"]);
    }

    #[test]
    fn script_mode_copies_the_script_into_the_flows_directory() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("etl.py");
        std::fs::write(&script, "print('hi')\n").unwrap();
        let ctx = OpenContext {
            script_path: Some(script.to_string_lossy().into_owned()),
            ..OpenContext::default()
        };
        let d = Docker::from_url("docker://r:5000/etl?directory=/srv", &ctx).unwrap();
        assert!(d.config().stored_as_script);
        assert_eq!(d.config().path.as_deref(), Some("/srv/flows/etl.py"));
        let host = std::fs::canonicalize(&script).unwrap();
        assert_eq!(
            d.build.files[&host.to_string_lossy().into_owned()],
            "/srv/flows/etl.py"
        );
        assert!(d.capabilities().script && !d.capabilities().serialized);
    }

    #[test]
    fn a_url_storage_and_its_reopened_reference_have_equal_configs() {
        let d = open("docker://127.0.0.1:5000/team/etl:v1?mode=daemonless&base_image=127.0.0.1:5000/b:1&directory=/srv&username_secret=U&password_secret=P&label=prod&secret=EXTRA").unwrap();
        let reference = d.reference().unwrap();
        assert_eq!(reference.secrets, ["EXTRA", "U", "P"]);
        assert_eq!(reference.labels, ["prod"]);
        let reopened = Docker::from_reference(&reference, &OpenContext::default()).unwrap();
        assert_eq!(reopened.config(), d.config());
        assert_eq!(
            crate::DockerConfig::from_reference(&reference).unwrap(),
            *d.config()
        );
    }
}
