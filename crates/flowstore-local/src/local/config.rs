//! [`LocalConfig`]: the backend fields of a `Local` reference, the whole configuration of a
//! [`Local`](super::Local) storage.

use flowstore_core::raw::config::BackendConfig;
use serde::{Deserialize, Serialize};

use super::TYPE_NAME;

/// The backend fields of a `Local` reference (Prefect 1's names): the whole configuration of a
/// [`Local`](super::Local) storage.
///
/// Option keys ([`LocalBuilder::with_config`](super::LocalBuilder::with_config), a `file://`
/// URL's query): `directory`, `path`, `stored_as_script`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalConfig {
    /// The flow directory (`~` is expanded when the storage is built). `None`:
    /// `~/.flowstore/flows`.
    #[serde(default)]
    pub directory: Option<String>,
    /// The script's path in script mode.
    #[serde(default)]
    pub path: Option<String>,
    /// Script mode: the flow is the script at `path`, read again at every fetch.
    #[serde(default)]
    pub stored_as_script: bool,
}

impl BackendConfig for LocalConfig {
    const TYPE_NAME: &'static str = TYPE_NAME;
    const OPTIONS: &'static [(&'static str, &'static str)] = &[
        ("directory", "directory"),
        ("path", "path"),
        ("stored_as_script", "stored_as_script"),
    ];
}
