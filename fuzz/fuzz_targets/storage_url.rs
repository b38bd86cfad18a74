//! The CLI's storage-URL parsing (`Registry::open_url`) for `file://`, `http(s)://` (Webhook) and
//! `docker://`: opens or errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|url: &str| {
    let mut registry = flowstore_core::Registry::new();
    flowstore_local::register(&mut registry);
    flowstore_webhook::register(&mut registry);
    flowstore_docker::register(&mut registry);
    let _ = registry.open_url(url);
    let _ = registry.open_url_script(url, "flow.py");
});
