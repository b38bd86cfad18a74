//! The envelope decoder, whole and streamed: they agree, and never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole =
        flowstore_core::envelope::Envelope::open("f", "fuzz", bytes::Bytes::copy_from_slice(data));
    let mut check = flowstore_core::envelope::StreamCheck::new("f", "fuzz");
    let streamed = data
        .chunks(7)
        .try_for_each(|c| check.update(c).map(|_| ()))
        .and_then(|_| check.finish().map(|_| ()));
    assert_eq!(
        whole.is_ok(),
        streamed.is_ok(),
        "whole and streamed checks disagree"
    );
    let _ = flowstore_core::flow::decode_stored("f", "fuzz", bytes::Bytes::copy_from_slice(data));
});
