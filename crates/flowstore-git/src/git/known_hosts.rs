//! Checking an ssh server's host key against a `known_hosts` file: an unknown or changed key is
//! refused unless the storage opts out.

use std::path::{Path, PathBuf};

use base64::Engine as _;

/// The user's `~/.ssh/known_hosts`.
pub(crate) fn default_path() -> PathBuf {
    dirs::home_dir()
        .unwrap_or_default()
        .join(".ssh")
        .join("known_hosts")
}

/// The outcome of a host-key check.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The key is listed for this host.
    Known,
    /// The host is listed with other keys only: possibly an impostor.
    Changed,
    /// The host is not listed.
    Unknown,
}

/// Checks `key` (the raw key blob) of type `key_type` (`ssh-ed25519`, …) for `host`:`port`.
/// Hashed (`|1|…`) entries are not matched; list the host in plain form.
pub(crate) fn check(file: &Path, host: &str, port: u16, key_type: &str, key: &[u8]) -> Verdict {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Verdict::Unknown;
    };
    let wanted = base64::engine::general_purpose::STANDARD.encode(key);
    let names = if port == 22 {
        vec![host.to_string()]
    } else {
        vec![format!("[{host}]:{port}")]
    };
    let mut seen_host = false;
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut parts = line.split_whitespace();
        let (Some(hosts), Some(kind), Some(blob)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !hosts.split(',').any(|h| names.iter().any(|n| n == h)) {
            continue;
        }
        seen_host = true;
        if kind == key_type && blob == wanted {
            return Verdict::Known;
        }
    }
    if seen_host {
        Verdict::Changed
    } else {
        Verdict::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_plain_and_bracketed_entries() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("known_hosts");
        let key = b"the-key";
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        std::fs::write(&f, format!("# comment\nexample.com,1.2.3.4 ssh-ed25519 {b64}\n[127.0.0.1]:2222 ssh-ed25519 {b64}\n")).unwrap();
        assert_eq!(
            check(&f, "example.com", 22, "ssh-ed25519", key),
            Verdict::Known
        );
        assert_eq!(
            check(&f, "127.0.0.1", 2222, "ssh-ed25519", key),
            Verdict::Known
        );
        assert_eq!(
            check(&f, "127.0.0.1", 2222, "ssh-ed25519", b"other"),
            Verdict::Changed
        );
        assert_eq!(
            check(&f, "127.0.0.1", 22, "ssh-ed25519", key),
            Verdict::Unknown
        );
        assert_eq!(
            check(&dir.path().join("none"), "h", 22, "ssh-ed25519", key),
            Verdict::Unknown
        );
    }
}
