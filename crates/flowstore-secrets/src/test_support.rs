//! Test helpers for every crate (feature `test-support`): prove a secret value never shows up in
//! logs, errors or `Debug` output.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Panics, naming `what` (but not the secret), if `secret` occurs in `text`.
pub fn assert_secret_absent(secret: &str, text: &str, what: &str) {
    assert!(
        !secret.is_empty(),
        "assert_secret_absent needs a non-empty secret"
    );
    if text.contains(secret) {
        panic!(
            "a secret value leaked into {what} ({} bytes of text)",
            text.len()
        );
    }
}

/// Runs `f` with every `tracing` event (all levels, all fields) captured, and returns the text.
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let writer = BufWriter(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    (out, text)
}

#[derive(Clone)]
struct BufWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
