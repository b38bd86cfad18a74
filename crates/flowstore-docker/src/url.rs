//! `docker://` storage URLs, so `flowstore register --storage docker://…` can build an image.
//!
//! `docker://REGISTRY/NAME[:TAG][?OPTIONS]`; `docker:///NAME` builds a local image with no
//! registry (Engine only). Options, `&`-separated, values percent-decoded (`%20` for a space):
//!
//! | option | meaning |
//! |---|---|
//! | `mode=engine` (default) / `mode=daemonless` | how the image is built ([`BuildMode`]) |
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
//! | `username_secret=NAME&password_secret=NAME` | registry credentials from the secret sources |
//!
//! In script mode (the context's script path) the script is copied to `{directory}/flows/` and
//! stored as a script, its SHA-256 checked by the health check and at fetch.

use flowstore_core::OpenContext;

use crate::error::{Error, Result};
use crate::storage::{BuildConfig, BuildMode, Docker};

/// Opens a `docker://` URL (see the [module docs](self)).
///
/// Errors with [`Error::Config`] naming the URL and the option that is wrong.
pub fn open(url: &str, ctx: &OpenContext) -> Result<Docker> {
    let bad = |why: String| {
        Error::config(format!(
            "storage URL \"{url}\": {why} (expected docker://REGISTRY/NAME[:TAG][?options])"
        ))
    };
    let rest = url
        .strip_prefix("docker://")
        .ok_or_else(|| bad("it does not start with docker://".into()))?;
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (registry, image) = location
        .split_once('/')
        .ok_or_else(|| bad("no image name".into()))?;
    let (name, tag) = match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (image, None),
    };
    if name.is_empty() {
        return Err(bad("no image name".into()));
    }
    let mut build = BuildConfig::default();
    let mut directory = None;
    let mut credentials = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value =
            percent_decode(raw).ok_or_else(|| bad(format!("option {key}: bad %-escape")))?;
        let key_value = || {
            value
                .split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| bad(format!("option {key} must be {key}=KEY=VALUE")))
        };
        match key {
            "mode" => {
                build.mode = match value.as_str() {
                    "engine" => BuildMode::Engine,
                    "daemonless" => BuildMode::Daemonless,
                    other => {
                        return Err(bad(format!("mode \"{other}\" is not engine or daemonless")))
                    }
                }
            }
            "base_image" => build.base_image = Some(value),
            "dockerfile" => {
                let text = std::fs::read_to_string(&value)
                    .map_err(|e| bad(format!("reading dockerfile {value}: {e}")))?;
                build.dockerfile = Some(text);
            }
            "directory" => directory = Some(value),
            "file" => {
                let (host, image_path) = value
                    .split_once(':')
                    .ok_or_else(|| bad("option file must be file=HOST_PATH:IMAGE_PATH".into()))?;
                build.files.insert(host.to_string(), image_path.to_string());
            }
            "env" => {
                let (k, v) = key_value()?;
                build.env_vars.insert(k, v);
            }
            "build_arg" => {
                let (k, v) = key_value()?;
                build.build_args.insert(k, v);
            }
            "dependency" => build.dependencies.push(value),
            "install_command" => build.install_command = value,
            "extra_command" => build.extra_dockerfile_commands.push(value),
            "load_command" => build.load_command = Some(value),
            "local_image" => build.local_image = value.is_empty() || value == "true",
            "base_url" => build.base_url = Some(value),
            "platform" => build.platform = value,
            "username_secret" => credentials.0 = Some(value),
            "password_secret" => credentials.1 = Some(value),
            other => return Err(bad(format!("unknown option \"{other}\""))),
        }
    }
    build.registry_credentials = match credentials {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => return Err(bad("username_secret and password_secret go together".into())),
    };
    let registry = (!registry.is_empty()).then_some(registry);
    let mut docker = Docker::new(registry, build)
        .image(name, tag)
        .secrets(ctx.secrets.clone());
    if let Some(dir) = directory {
        docker = docker.directory(&dir);
    }
    if let Some(progress) = &ctx.progress {
        docker = docker.with_progress(progress.clone());
    }
    if let Some(script) = &ctx.script_path {
        let host =
            std::fs::canonicalize(script).map_err(|e| bad(format!("script {script}: {e}")))?;
        let file_name = host
            .file_name()
            .ok_or_else(|| bad(format!("script {script} has no file name")))?
            .to_string_lossy()
            .into_owned();
        let image_path = format!(
            "{}/flows/{file_name}",
            docker.fields().directory.trim_end_matches('/')
        );
        docker
            .build
            .files
            .insert(host.to_string_lossy().into_owned(), image_path.clone());
        docker = docker.script(&image_path);
    }
    Ok(docker)
}

/// Decodes `%XX` escapes (`%20` for a space; `+` is a plus); `None` for a `%` that does not start
/// an escape or a result that is not UTF-8, so a mistyped option is refused, not guessed at.
fn percent_decode(raw: &str) -> Option<String> {
    let malformed = raw.match_indices('%').any(|(i, _)| {
        raw.get(i + 1..i + 3)
            .is_none_or(|hex| !hex.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if malformed {
        return None;
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_ok(url: &str) -> Docker {
        open(url, &OpenContext::default()).unwrap()
    }

    #[test]
    fn registry_name_tag_and_options() {
        let d = open_ok("docker://127.0.0.1:5000/team/etl:v1?mode=daemonless&base_image=127.0.0.1:5000/base/busybox:1&env=A=b%20c&directory=/srv/f&local_image=true");
        assert_eq!(d.fields().registry_url.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(d.fields().image_name.as_deref(), Some("team/etl"));
        assert_eq!(d.fields().image_tag.as_deref(), Some("v1"));
        assert_eq!(d.fields().directory, "/srv/f");
        assert_eq!(d.build.mode, BuildMode::Daemonless);
        assert_eq!(
            d.build.base_image.as_deref(),
            Some("127.0.0.1:5000/base/busybox:1")
        );
        assert_eq!(d.build.env_vars["A"], "b c");
        assert!(d.build.local_image);
        assert_eq!(d.image_ref().unwrap(), "127.0.0.1:5000/team/etl:v1");
    }

    #[test]
    fn no_registry_and_no_tag() {
        let d = open_ok("docker:///etl");
        assert_eq!(d.fields().registry_url, None);
        assert_eq!(d.fields().image_name.as_deref(), Some("etl"));
        assert_eq!(d.fields().image_tag, None);
        assert_eq!(d.build.mode, BuildMode::Engine);
    }

    #[test]
    fn bad_urls_name_the_problem() {
        for (url, needle) in [
            ("docker://127.0.0.1:5000", "no image name"),
            ("docker://r/x?mode=fast", "mode \"fast\""),
            ("docker://r/x?colour=red", "unknown option \"colour\""),
            ("docker://r/x?env=NOEQUALS", "env=KEY=VALUE"),
            ("docker://r/x?file=/only/host", "file=HOST_PATH:IMAGE_PATH"),
            ("docker://r/x?username_secret=U", "go together"),
            ("docker://r/x?load_command=%zz", "bad %-escape"),
            (
                "docker://r/x?dockerfile=/no/such/Dockerfile",
                "reading dockerfile",
            ),
        ] {
            let e = open(url, &OpenContext::default()).unwrap_err().to_string();
            assert!(e.contains(needle), "{url}: {e}");
            assert!(e.contains(url), "{url}: the error names the URL: {e}");
        }
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
        let d = open("docker://r:5000/etl", &ctx).unwrap();
        assert!(d.fields().stored_as_script);
        assert_eq!(
            d.fields().path.as_deref(),
            Some("/opt/flowstore/flows/etl.py")
        );
        let host = std::fs::canonicalize(&script).unwrap();
        assert_eq!(
            d.build.files[&host.to_string_lossy().into_owned()],
            "/opt/flowstore/flows/etl.py"
        );
    }
}
