//! Measurements the bench drivers (`cargo xtask bench`) share.

use std::time::Instant;

use bytes::Bytes;

use crate::envelope::sha256_digest;
use crate::raw::FlowIndex;

/// Microseconds per flow of what a fetch checks once a flow's bytes are in memory: the digest
/// recorded at registration, the envelope's header, name and length (no I/O). `envelopes` are
/// sealed flows named `flow-0`, `flow-1`, …
///
/// Errors: what the check answers for an envelope that does not open (a bench bug).
pub fn verify_only(envelopes: &[Bytes]) -> crate::Result<f64> {
    let mut index = FlowIndex::default();
    for (i, bytes) in envelopes.iter().enumerate() {
        index.insert(
            &format!("flow-{i}"),
            format!("loc-{i}"),
            Some(sha256_digest(bytes)),
        )?;
    }
    let start = Instant::now();
    for (i, bytes) in envelopes.iter().enumerate() {
        index.open_serialized(&format!("flow-{i}"), "loc", None, bytes.clone())?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / envelopes.len().max(1) as f64)
}
