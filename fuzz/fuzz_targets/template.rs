//! The `${NAME}` template renderer: renders or errors, never panics, never renders twice.
#![no_main]
use flowstore_secrets::{ExposeSecret, MapSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let sources = MapSource::new()
        .with("FUZZ_A", "${FUZZ_B}")
        .with("FUZZ_B", "value-b");
    let value = serde_json::json!({"url": text, "nested": [text, {"k": text}], "n": 1});
    if let Ok(rendered) = flowstore_secrets::render(&value, &sources) {
        let v = rendered.expose_secret();
        assert_eq!(v["n"], 1);
        // A rendered value is never rendered again: FUZZ_A stays "${FUZZ_B}" literally.
        if text == "${FUZZ_A}" {
            assert_eq!(v["url"], "${FUZZ_B}");
        }
    }
});
