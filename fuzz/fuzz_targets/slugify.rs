//! slugify: always a safe, idempotent key segment.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let slug = flowstore_core::key::slugify(text);
    assert!(slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    assert!(!slug.starts_with('-') && !slug.ends_with('-') && !slug.contains("--"));
    assert_eq!(flowstore_core::key::slugify(&slug), slug, "not idempotent");
    let seg = flowstore_core::key::flow_slug(text);
    assert!(!seg.is_empty() && seg.len() <= flowstore_core::key::MAX_SLUG_LEN);
});
