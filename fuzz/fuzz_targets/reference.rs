//! The storage-reference parser and registry: any bytes give a reference or a clear error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = flowstore_core::StorageReference::from_slice(data) {
        // A parsed reference always serializes and parses back to itself.
        let again = flowstore_core::StorageReference::from_json(&r.to_json()).expect("round trip");
        assert_eq!(again, r);
        let mut registry = flowstore_core::Registry::new();
        flowstore_local::register(&mut registry);
        let _ = registry.open(&r);
    }
});
