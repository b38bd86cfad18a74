//! Reading what Prefect 1 wrote: the migration path for Prefect 1 users.
//!
//! Prefect 1.4 stores a pickled flow as JSON `{"flow": base64(cloudpickle), "versions": {...}}`;
//! older releases stored the bare cloudpickle stream. Both are recognised here and handed back as
//! [`FlowContent::Prefect1Pickle`].

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;

use crate::flow::FlowContent;

/// Recognises a Prefect 1 flow payload; `None` if `bytes` is not one.
pub fn parse_pickle_payload(bytes: &[u8]) -> Option<FlowContent> {
    // Pickle protocol 2+ streams start with the PROTO opcode 0x80.
    if bytes.first() == Some(&0x80) {
        return Some(FlowContent::Prefect1Pickle {
            pickle: Bytes::copy_from_slice(bytes),
            versions: BTreeMap::new(),
        });
    }
    if bytes.first() != Some(&b'{') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let flow = value.get("flow")?.as_str()?;
    let pickle = base64::engine::general_purpose::STANDARD
        .decode(flow)
        .ok()?;
    let versions = value
        .get("versions")
        .and_then(|v| v.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Some(FlowContent::Prefect1Pickle {
        pickle: Bytes::from(pickle),
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_prefect_14_payload() {
        let payload = br#"{"flow": "gASVAAAAAAAAAAA=", "versions": {"cloudpickle": "2.2.1", "prefect": "1.4.1", "python": "3.11.7"}}"#;
        match parse_pickle_payload(payload) {
            Some(FlowContent::Prefect1Pickle { pickle, versions }) => {
                assert_eq!(pickle[0], 0x80);
                assert_eq!(versions["prefect"], "1.4.1");
            }
            other => panic!("not recognised: {other:?}"),
        }
    }

    #[test]
    fn recognises_bare_pickle_and_rejects_other_json() {
        assert!(parse_pickle_payload(b"\x80\x04\x95").is_some());
        assert!(parse_pickle_payload(br#"{"tasks": []}"#).is_none());
        assert!(parse_pickle_payload(b"print('hi')").is_none());
    }
}
