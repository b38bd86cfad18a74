//! The storage reference: the small JSON document an orchestrator persists and an agent turns
//! back into a storage.
//!
//! ```json
//! {"type": "S3", "__version__": "0.1.0", "flows": {"My ETL Flow": "my-etl-flow/2026-…"},
//!  "secrets": [], "flow_digests": {"My ETL Flow": "sha256:…"}, "bucket": "my-bucket", "key": null}
//! ```
//!
//! `type`, `flows`, `secrets` and every backend field use Prefect 1's names, so a reference written
//! by Prefect 1 opens as is. flowstore adds `flow_digests` (what was stored, checked at fetch) and
//! `labels`. Unknown fields are ignored on load. The JSON Schema is generated from these types
//! into `schema/storage-reference.schema.json` (feature `schema`).

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// The largest reference flowstore parses (a reference is a few KiB; this bounds hostile input).
pub const MAX_REFERENCE_LEN: usize = 16 * 1024 * 1024;

/// A storage reference (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StorageReference {
    /// The backend's type name, as in Prefect 1: `Local`, `Module`, `S3`, `Azure`, `GCS`, `Git`,
    /// `GitHub`, `GitLab`, `Bitbucket`, `CodeCommit`, `Docker`, `Webhook`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The version of the tool that wrote the reference (flowstore's, or Prefect's for migrated ones).
    #[serde(rename = "__version__", default, deserialize_with = "null_as_default")]
    pub version: String,
    /// Flow name → location inside the storage.
    #[serde(default, deserialize_with = "null_as_default")]
    pub flows: BTreeMap<String, String>,
    /// Names of the secrets an agent must resolve before fetching.
    #[serde(default, deserialize_with = "null_as_default")]
    pub secrets: Vec<String>,
    /// Flow name → `sha256:<hex>` of what was stored (flowstore extension; absent in Prefect 1 references).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub flow_digests: BTreeMap<String, String>,
    /// Labels an agent must carry to run these flows (flowstore extension).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub labels: Vec<String>,
    /// The backend's own fields (`directory`, `bucket`, `repo`, …), with Prefect 1's names.
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl StorageReference {
    /// A reference of `type_name` with the backend fields taken from `fields` (a struct that
    /// serializes to a JSON object).
    ///
    /// Errors with [`Error::InvalidReference`] if `fields` does not serialize to an object.
    pub fn new<F: Serialize>(type_name: &str, fields: &F) -> Result<Self> {
        let value = serde_json::to_value(fields)
            .map_err(|e| Error::invalid_reference(format!("{type_name} fields: {e}")))?;
        let serde_json::Value::Object(fields) = value else {
            return Err(Error::invalid_reference(format!(
                "{type_name} fields must serialize to a JSON object"
            )));
        };
        Ok(StorageReference {
            type_name: type_name.to_string(),
            version: crate::envelope::FLOWSTORE_VERSION.to_string(),
            flows: BTreeMap::new(),
            secrets: Vec::new(),
            flow_digests: BTreeMap::new(),
            labels: Vec::new(),
            fields,
        })
    }

    /// Parses a reference from JSON.
    ///
    /// Errors with [`Error::InvalidReference`] for malformed JSON, a missing `type`, or a document
    /// over [`MAX_REFERENCE_LEN`].
    ///
    /// ```
    /// let r = flowstore_core::StorageReference::from_json(
    ///     r#"{"__version__":"1.4.1","type":"S3","bucket":"my-bucket","key":null,
    ///         "stored_as_script":false,"secrets":[],"flows":{"My ETL Flow":"my-etl-flow/x"}}"#,
    /// ).unwrap();
    /// assert_eq!(r.type_name, "S3");
    /// assert_eq!(r.fields["bucket"], "my-bucket");
    /// ```
    pub fn from_json(json: &str) -> Result<Self> {
        Self::from_slice(json.as_bytes())
    }

    /// Parses a reference from JSON bytes (see [`StorageReference::from_json`]).
    pub fn from_slice(json: &[u8]) -> Result<Self> {
        if json.len() > MAX_REFERENCE_LEN {
            return Err(Error::invalid_reference(format!(
                "it is {} bytes; references are at most {MAX_REFERENCE_LEN} bytes",
                json.len()
            )));
        }
        let reference: StorageReference = serde_json::from_slice(json).map_err(|e| {
            Error::invalid_reference(format!(
                "not a storage reference ({e}); expected a JSON object with a \"type\" field"
            ))
        })?;
        for (name, location) in &reference.flows {
            if name.contains('\0') || location.contains('\0') {
                return Err(Error::invalid_reference(format!(
                    "flow {name:?} has a NUL character in its name or location"
                )));
            }
        }
        Ok(reference)
    }

    /// The reference as compact JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a storage reference always serializes")
    }

    /// The reference as indented JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a storage reference always serializes")
    }

    /// Reads the backend fields into the backend's config struct (unknown fields are ignored when
    /// the struct does not deny them).
    ///
    /// Errors with [`Error::InvalidReference`] naming the type and the serde error.
    pub fn backend_fields<F: DeserializeOwned>(&self) -> Result<F> {
        serde_json::from_value(serde_json::Value::Object(self.fields.clone())).map_err(|e| {
            Error::invalid_reference(format!("{} reference fields: {e}", self.type_name))
        })
    }

    /// The JSON Schema of the reference format, as pretty JSON (feature `schema`).
    #[cfg(feature = "schema")]
    pub fn json_schema() -> String {
        let schema = schemars::schema_for!(StorageReference);
        serde_json::to_string_pretty(&schema).expect("a schema always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefect_reference_opens_and_ignores_unknown_fields() {
        let json = r#"{"__version__":"1.4.1","type":"S3","bucket":"my-bucket","key":null,
            "stored_as_script":false,"client_options":{"region_name":"us-east-1"},"secrets":[],
            "flows":{"My ETL Flow":"my-etl-flow/2026-11-24t03-18-11-800187-00-00"},
            "some_future_field": 3}"#;
        let r = StorageReference::from_json(json).unwrap();
        assert_eq!(r.version, "1.4.1");
        assert_eq!(
            r.flows["My ETL Flow"],
            "my-etl-flow/2026-11-24t03-18-11-800187-00-00"
        );
        #[derive(Deserialize)]
        struct S3Fields {
            bucket: String,
        }
        let f: S3Fields = r.backend_fields().unwrap();
        assert_eq!(f.bucket, "my-bucket");
    }

    #[test]
    fn null_lists_are_empty() {
        let r =
            StorageReference::from_json(r#"{"type":"Local","flows":null,"secrets":null}"#).unwrap();
        assert!(r.flows.is_empty() && r.secrets.is_empty());
    }

    #[test]
    fn malformed_references_are_clear_errors() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"flows":{}}"#,
            r#"{"type":3}"#,
            "{\"type\":\"Local\",\"flows\":{\"a\":\"b\u{0}\"}}",
        ] {
            let e = StorageReference::from_json(bad).unwrap_err().to_string();
            assert!(e.starts_with("Invalid storage reference"), "{bad}: {e}");
        }
    }

    #[test]
    fn round_trips_through_json() {
        let mut r =
            StorageReference::new("Local", &serde_json::json!({"directory": "/x"})).unwrap();
        r.flows.insert("f".into(), "f/1".into());
        r.flow_digests.insert("f".into(), "sha256:00".into());
        let back = StorageReference::from_json(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }

    #[cfg(feature = "schema")]
    #[test]
    fn checked_in_schema_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schema/storage-reference.schema.json"
        );
        match std::fs::read_to_string(path) {
            Ok(on_disk) => assert_eq!(
                on_disk.trim_end(),
                StorageReference::json_schema(),
                "schema/storage-reference.schema.json is stale: run `cargo xtask schema`"
            ),
            // Outside the repository (e.g. a packaged crate) there is no checked-in schema.
            Err(e) => eprintln!("skipping schema check: {path}: {e}"),
        }
    }
}
