//! Typed OCI image structures: the parts of image manifests, indexes and configs that flowstore
//! reads or writes, as serde structs.
//!
//! Every struct keeps the fields it does not name in `other`, so a base image's manifest and
//! config go through a daemonless build unchanged apart from what flowstore adds (a Docker
//! `Healthcheck`, `OnBuild` or `Shell`, annotations, `os.version`, …). Required fields are
//! required: a manifest, config or layer without a digest fails to parse with an error naming
//! the missing field, and a [`Digest`] is checked when it is read.
//!
//! (The `oci-spec` crate was considered: its structs drop fields they do not know, such as
//! Docker's `Healthcheck`, and keep labels in a `HashMap`, which would change a base image's
//! config and make the config digest of a rebuild vary.)

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// An OCI image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker's schema-2 manifest (accepted when reading base images).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// An OCI image index (a multi-platform image).
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker's manifest list (a multi-platform image).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// An OCI image config.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// A gzipped OCI layer.
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A content digest, `algorithm:encoded` (`sha256:` and 64 lowercase hex digits).
///
/// Parsing checks the form (the OCI grammar; `sha256`/`sha512` digests must have the right
/// number of lowercase hex digits), so a digest read from a reference or a registry is safe to
/// put in a URL path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Digest(String);

impl Digest {
    /// The `sha256:` digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The digest as text (`sha256:…`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the algorithm (the hex digits of a `sha256:` digest).
    pub fn encoded(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, e)| e)
    }

    fn check(text: &str) -> std::result::Result<(), String> {
        let Some((algorithm, encoded)) = text.split_once(':') else {
            return Err(format!(
                "\"{text}\" is not a digest: it should look like sha256:<64 hex digits>"
            ));
        };
        let algorithm_ok = !algorithm.is_empty()
            && algorithm.split(['+', '.', '_', '-']).all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        let encoded_ok = !encoded.is_empty()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
        let hex_len = match algorithm {
            "sha256" => Some(64),
            "sha512" => Some(128),
            _ => None,
        };
        let hex_ok = hex_len.is_none_or(|n| {
            encoded.len() == n
                && encoded
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if algorithm_ok && encoded_ok && hex_ok {
            Ok(())
        } else {
            Err(format!(
                "\"{text}\" is not a digest: it should look like sha256:<64 lowercase hex digits>"
            ))
        }
    }
}

impl FromStr for Digest {
    type Err = Error;

    /// Errors with [`Error::Config`] when `text` is not `algorithm:encoded`.
    fn from_str(text: &str) -> Result<Self> {
        Digest::check(text).map_err(Error::Config)?;
        Ok(Digest(text.to_string()))
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Digest::check(&text).map_err(serde::de::Error::custom)?;
        Ok(Digest(text))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Digest {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Digest {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A reference to content: its media type, digest and size (plus the platform, in an index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is ([`MANIFEST`], [`CONFIG`], [`LAYER`], …).
    pub media_type: String,
    /// The content's digest.
    pub digest: Digest,
    /// The content's size in bytes.
    pub size: u64,
    /// The platform of a manifest listed in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Every other field (`urls`, `annotations`, `artifactType`, …), kept as it was.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Descriptor {
    /// A descriptor of `media_type` content with this digest and size.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            other: Map::new(),
        }
    }
}

/// The platform of an image (`linux`/`amd64`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// The CPU architecture, as Go names it (`amd64`, `arm64`, …).
    pub architecture: String,
    /// The operating system (`linux`).
    pub os: String,
    /// The CPU variant (`v8`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Every other field (`os.version`, `os.features`, …), kept as it was.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker schema 2): the config and the layers, bottom first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MANIFEST`] or [`DOCKER_MANIFEST`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// Every other field (`annotations`, `subject`, …), kept as it was.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ImageManifest {
    /// An OCI manifest of a config and layers.
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        ImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST.to_string()),
            config,
            layers,
            other: Map::new(),
        }
    }
}

/// An image index (OCI) or manifest list (Docker): one manifest per platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// [`INDEX`] or [`DOCKER_MANIFEST_LIST`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests, each with its platform.
    pub manifests: Vec<Descriptor>,
    /// Every other field, kept as it was.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ImageIndex {
    /// An OCI index of `manifests`.
    pub fn new(manifests: Vec<Descriptor>) -> Self {
        ImageIndex {
            schema_version: 2,
            media_type: Some(INDEX.to_string()),
            manifests,
            other: Map::new(),
        }
    }
}

/// What a registry holds under a tag or digest: an image manifest or an index.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Manifest {
    /// A single-platform image.
    Image(ImageManifest),
    /// A multi-platform image.
    Index(ImageIndex),
}

impl Manifest {
    /// Parses a manifest; an index when its media type says so or it lists `manifests`.
    ///
    /// Errors with [`Error::Config`] naming `what` and the first field that is missing or wrong
    /// (a descriptor without a `digest`, a malformed digest, a manifest without `layers`).
    pub fn from_slice(bytes: &[u8], what: &str) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            media_type: Option<String>,
            manifests: Option<serde::de::IgnoredAny>,
        }
        let bad = |e: serde_json::Error| {
            Error::Config(format!(
                "{what} is not a valid image manifest or index: {e}"
            ))
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(bad)?;
        let is_index = match probe.media_type.as_deref() {
            Some(INDEX | DOCKER_MANIFEST_LIST) => true,
            Some(_) => false,
            None => probe.manifests.is_some(),
        };
        Ok(if is_index {
            Manifest::Index(serde_json::from_slice(bytes).map_err(bad)?)
        } else {
            Manifest::Image(serde_json::from_slice(bytes).map_err(bad)?)
        })
    }

    /// The media type to send it with (the manifest's own, else the OCI one for its kind).
    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Image(m) => m.media_type.as_deref().unwrap_or(MANIFEST),
            Manifest::Index(i) => i.media_type.as_deref().unwrap_or(INDEX),
        }
    }

    /// The image manifest, or `None` for an index.
    pub fn into_image(self) -> Option<ImageManifest> {
        match self {
            Manifest::Image(m) => Some(m),
            Manifest::Index(_) => None,
        }
    }

    /// The index, or `None` for an image manifest.
    pub fn into_index(self) -> Option<ImageIndex> {
        match self {
            Manifest::Index(i) => Some(i),
            Manifest::Image(_) => None,
        }
    }

    /// The JSON bytes pushed to a registry.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifests serialize")
    }
}

impl From<ImageManifest> for Manifest {
    fn from(m: ImageManifest) -> Self {
        Manifest::Image(m)
    }
}

impl From<ImageIndex> for Manifest {
    fn from(i: ImageIndex) -> Self {
        Manifest::Index(i)
    }
}

/// An image config: the platform, the container settings, the layers' uncompressed digests and
/// the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageConfiguration {
    /// The CPU architecture (`amd64`).
    pub architecture: String,
    /// The operating system (`linux`).
    pub os: String,
    /// How a container runs (`Env`, `Cmd`, `Labels`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    /// The layers' uncompressed digests, bottom first.
    pub rootfs: RootFs,
    /// How each layer was made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Every other field (`created`, `author`, `variant`, Docker's `container_config`, …).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ImageConfiguration {
    /// A `linux`/`amd64` config of layers with these uncompressed digests.
    pub fn new(config: ContainerConfig, diff_ids: Vec<Digest>) -> Self {
        ImageConfiguration {
            architecture: "amd64".to_string(),
            os: "linux".to_string(),
            config: Some(config),
            rootfs: RootFs {
                kind: "layers".to_string(),
                diff_ids,
            },
            history: Vec::new(),
            other: Map::new(),
        }
    }
}

/// The container settings of an image config (Docker's capitalized names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `KEY=VALUE` environment entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// The default command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// The entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Image labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Every other field (`User`, `WorkingDir`, `Healthcheck`, …), kept as it was.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The layers of an image config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The uncompressed digest of each layer, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// One history entry of an image config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The command that made the layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True for a step that made no layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
    /// Every other field (`created`, `author`), kept as it was.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// An image reference with its registry: `registry/repository:tag` or
/// `registry/repository@sha256:…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// The registry (`host[:port]`).
    pub registry: String,
    /// The repository (`team/etl`).
    pub repository: String,
    /// The tag or digest (default `latest`).
    pub reference: String,
}

impl FromStr for ImageReference {
    type Err = Error;

    /// Errors with [`Error::Config`] when the first component is not a registry (a host with a
    /// dot or a port, or `localhost`) or the repository is empty.
    fn from_str(image: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Config(format!(
                "image {image} {why}: it should look like registry.example.com:5000/name:tag (a daemonless build reads its base image from a registry)"
            ))
        };
        let (registry, rest) = image
            .split_once('/')
            .ok_or_else(|| bad("does not name its registry"))?;
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad("does not name its registry"));
        }
        let (repository, reference) = match rest.split_once('@') {
            Some((repo, digest)) => {
                digest.parse::<Digest>()?;
                (repo, digest)
            }
            None => match rest.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => (repo, tag),
                _ => (rest, "latest"),
            },
        };
        if repository.is_empty() || reference.is_empty() {
            return Err(bad("has no repository name or tag"));
        }
        Ok(ImageReference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            reference: reference.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn digests_are_checked() {
        assert_eq!(D.parse::<Digest>().unwrap().encoded().len(), 64);
        assert_eq!(Digest::of(b"").as_str().len(), 71);
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            "sha256:../../etc",
            "nocolon",
            ":abc",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        assert!("blake3:abcDEF=_-".parse::<Digest>().is_ok());
    }

    #[test]
    fn a_descriptor_without_a_digest_is_refused_by_name() {
        let json = br#"{"schemaVersion":2,"config":{"mediaType":"x","size":1},"layers":[]}"#;
        let e = Manifest::from_slice(json, "manifest v1 of etl")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("manifest v1 of etl") && e.contains("`digest`"),
            "{e}"
        );
        let json =
            br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"","size":1},"layers":[]}"#;
        let e = Manifest::from_slice(json, "m").unwrap_err().to_string();
        assert!(e.contains("is not a digest"), "{e}");
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/bin"], "Healthcheck": {"Test": ["CMD", "true"]}, "Labels": null},
            "rootfs": {"type": "layers", "diff_ids": [D]},
            "history": [{"created_by": "x", "created": "2024"}],
        });
        let typed: ImageConfiguration = serde_json::from_value(config.clone()).unwrap();
        let back = serde_json::to_value(&typed).unwrap();
        assert_eq!(
            back["config"]["Healthcheck"],
            config["config"]["Healthcheck"]
        );
        assert_eq!(back["created"], config["created"]);
        assert_eq!(back["history"][0]["created"], "2024");
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": MANIFEST, "digest": D, "size": 3, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]});
        let Manifest::Index(i) = Manifest::from_slice(index.to_string().as_bytes(), "i").unwrap()
        else {
            panic!("an index")
        };
        assert_eq!(
            i.manifests[0].platform.as_ref().unwrap().to_string(),
            "linux/arm64/v8"
        );
    }

    #[test]
    fn image_references_name_their_registry() {
        let r: ImageReference = "127.0.0.1:5000/base/busybox:1".parse().unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            ("127.0.0.1:5000", "base/busybox", "1")
        );
        let r: ImageReference = "registry.example.com/etl".parse().unwrap();
        assert_eq!(r.reference, "latest");
        let r: ImageReference = format!("localhost/etl@{D}").parse().unwrap();
        assert_eq!(r.reference, D);
        for bad in [
            "python:3.12",
            "library/python:3",
            "r.io/",
            "r.io/x@sha256:1",
        ] {
            assert!(bad.parse::<ImageReference>().is_err(), "{bad}");
        }
    }
}
