//! The key scheme: `<slug(flow name)>/<slug(UTC timestamp)>`, the same keys Prefect 1 writes.
//!
//! [`slugify`] reproduces python-slugify's default output, so keys written by flowstore and by
//! Python tools agree. Timestamps always carry six fraction digits (Python drops them when the
//! microseconds are zero), so keys sort by time as strings, and [`unique_timestamp`] never hands
//! out the same instant twice in one process.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use unicode_normalization::UnicodeNormalization;

/// Turns any text into a key segment exactly as python-slugify does with its defaults.
///
/// Transliterates to ASCII, decodes HTML character references, lowercases, drops quotes and the
/// commas inside numbers, turns every run of characters outside `[a-z0-9-]` into one `-`, collapses
/// repeated `-` and trims them from both ends. The result never contains `/`, `.` or `..`, so a
/// slug is always a single safe path segment (it may be empty for input without letters or digits).
///
/// ```
/// use flowstore_core::key::slugify;
/// assert_eq!(slugify("My ETL Flow"), "my-etl-flow");
/// assert_eq!(slugify("Café Flow"), "cafe-flow");
/// assert_eq!(slugify("!&& ~~ cool flow :shades:"), "cool-flow-shades");
/// assert_eq!(slugify("../../etc/passwd"), "etc-passwd");
/// assert_eq!(slugify("Ünïcödé Straße"), "unicode-strasse");
/// ```
pub fn slugify(text: &str) -> String {
    // Quotes become separators before transliteration (python-slugify's QUOTE_PATTERN).
    let text = text.replace('\'', "-");
    let text: String = text.nfkd().collect();
    let text = deunicode::deunicode(&text);
    let text = decode_char_references(&text);
    let text: String = text.nfkd().collect();
    let text = text.to_lowercase();
    // Quotes produced by transliteration are removed, not separated.
    let text = text.replace('\'', "");
    let text = remove_number_commas(&text);

    let mut out = String::with_capacity(text.len());
    let mut pending_dash = false;
    for c in text.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c);
        } else {
            pending_dash = true;
        }
    }
    out
}

/// Removes commas between two digits (`1,000` → `1000`), as python-slugify does.
fn remove_number_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let between_digits = c == ','
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if !between_digits {
            out.push(c);
        }
    }
    out
}

/// Decodes `&name;`, `&#123;` and `&#x7B;` references, as python-slugify does before slugging.
///
/// Only the named entities that map to ASCII letters, digits or punctuation matter to the final
/// slug; anything else decodes to a character that becomes a separator anyway.
fn decode_char_references(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match after.find(';').and_then(|semi| {
            let body = &after[..semi];
            decode_reference(body).map(|c| (c, semi))
        }) {
            Some((decoded, semi)) => {
                out.push_str(&decoded);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_reference(body: &str) -> Option<String> {
    if let Some(hex) = body.strip_prefix("#x").or_else(|| body.strip_prefix("#X")) {
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let code = u32::from_str_radix(hex, 16).ok()?;
        return char::from_u32(code).map(|c| deunicode::deunicode(&c.to_string()));
    }
    if let Some(dec) = body.strip_prefix('#') {
        if dec.is_empty() || !dec.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let code: u32 = dec.parse().ok()?;
        return char::from_u32(code).map(|c| deunicode::deunicode(&c.to_string()));
    }
    // Named entities: the common ones; any named entity decodes to a non-alphanumeric
    // character or a letter that transliterates the same way.
    let decoded = match body {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        "nbsp" => " ",
        "copy" => "(c)",
        "reg" => "(r)",
        _ => return None,
    };
    Some(decoded.to_string())
}

/// Formats a UTC instant as Python's `isoformat()` with microseconds always present.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let t = Utc.with_ymd_and_hms(2026, 11, 24, 2, 51, 19).unwrap()
///     + chrono::Duration::microseconds(123456);
/// assert_eq!(flowstore_core::key::isoformat(&t), "2026-11-24T02:51:19.123456+00:00");
/// ```
pub fn isoformat(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// The key segment for a UTC instant: `slugify(isoformat(t))`, e.g. `2026-11-24t02-51-19-123456-00-00`.
pub fn timestamp_slug(t: &DateTime<Utc>) -> String {
    slugify(&isoformat(t))
}

/// The default key of a flow: `{slugify(name)}/{timestamp_slug(t)}`.
///
/// A name that slugs to nothing (only symbols) gets the segment `flow`, so the key still has two
/// non-empty segments.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let t = Utc.with_ymd_and_hms(2026, 11, 24, 2, 51, 19).unwrap()
///     + chrono::Duration::microseconds(123456);
/// assert_eq!(flowstore_core::key::flow_key("My ETL Flow", &t),
///            "my-etl-flow/2026-11-24t02-51-19-123456-00-00");
/// ```
pub fn flow_key(name: &str, t: &DateTime<Utc>) -> String {
    format!("{}/{}", flow_slug(name), timestamp_slug(t))
}

/// The longest flow slug used in keys: a file name or object-key segment stays well under the
/// 255-byte limit of common filesystems. Longer slugs are cut at a `-` boundary where possible.
pub const MAX_SLUG_LEN: usize = 120;

/// The first key segment for a flow name: its slug (at most [`MAX_SLUG_LEN`] characters), or
/// `flow` when the slug is empty.
pub fn flow_slug(name: &str) -> String {
    let mut slug = slugify(name);
    if slug.len() > MAX_SLUG_LEN {
        slug.truncate(MAX_SLUG_LEN);
        let trimmed = slug.trim_end_matches('-').len();
        slug.truncate(trimmed);
    }
    if slug.is_empty() {
        "flow".to_string()
    } else {
        slug
    }
}

/// Checks that `key` (relative to a storage's prefix or directory) names a flowstore version:
/// exactly two segments, a flow slug and a timestamp slug, each made only of `a-z`, `0-9` and
/// `-`. Used before anything is deleted, so a delete can never reach blobs (`.blobs/…`), other
/// programs' objects or anything outside the storage.
///
/// Errors with the reason, for a message naming the key.
///
/// ```
/// use flowstore_core::key::check_version_key;
/// assert!(check_version_key("my-etl-flow/2026-11-24t02-51-19-123456-00-00").is_ok());
/// assert!(check_version_key(".blobs/sha256/ab").is_err());
/// assert!(check_version_key("../etc/passwd").is_err());
/// ```
pub fn check_version_key(key: &str) -> std::result::Result<(), String> {
    let segments: Vec<&str> = key.split('/').collect();
    let [slug, stamp] = segments.as_slice() else {
        return Err(
            "a flow version's key has exactly two segments, <flow slug>/<timestamp>".into(),
        );
    };
    let is_slug = |s: &str| {
        !s.is_empty()
            && s.len() <= 255
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !is_slug(slug) {
        return Err(format!("{slug:?} is not a flow slug"));
    }
    if !is_slug(stamp) || !stamp.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return Err(format!("{stamp:?} is not a timestamp slug"));
    }
    Ok(())
}

static LAST_MICROS: AtomicI64 = AtomicI64::new(i64::MIN);

/// The current UTC time in microseconds, strictly later than every value this function returned
/// before in this process, so two registrations never get the same timestamp key.
///
/// Across processes, backends still guard against collisions with create-only writes.
pub fn unique_timestamp() -> DateTime<Utc> {
    let now = Utc::now().timestamp_micros();
    let mut last = LAST_MICROS.load(Ordering::Relaxed);
    loop {
        let next = if now > last { now } else { last + 1 };
        match LAST_MICROS.compare_exchange_weak(last, next, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => return micros_to_datetime(next),
            Err(seen) => last = seen,
        }
    }
}

fn micros_to_datetime(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(micros)
        .single()
        .expect("microsecond timestamps near now are always representable")
}

/// A fresh default key for `name`: [`flow_key`] at [`unique_timestamp`].
pub fn new_flow_key(name: &str) -> String {
    flow_key(name, &unique_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugify_matches_python_slugify() {
        let cases = [
            ("My ETL Flow", "my-etl-flow"),
            ("Café Flow", "cafe-flow"),
            (
                "WELL what do you know?!~? looks like a test!!!!",
                "well-what-do-you-know-looks-like-a-test",
            ),
            ("!&& ~~ cool flow :shades:", "cool-flow-shades"),
            ("../../etc/passwd", "etc-passwd"),
            ("Ünïcödé Straße", "unicode-strasse"),
            (
                "2026-11-24T02:51:19.123456+00:00",
                "2026-11-24t02-51-19-123456-00-00",
            ),
            ("This is a test ---", "this-is-a-test"),
            ("jaja---lol-méméméoo--a", "jaja-lol-mememeoo-a"),
            ("影師嗎", "ying-shi-ma"),
            ("C'est déjà l'été.", "c-est-deja-l-ete"),
            (
                "Nín hǎo. Wǒ shì zhōng guó rén",
                "nin-hao-wo-shi-zhong-guo-ren",
            ),
            ("1,000 reasons you are #1", "1000-reasons-you-are-1"),
            ("foo &amp; bar", "foo-bar"),
            ("&#65;BC", "abc"),
            ("&#x41;BC", "abc"),
            ("", ""),
            ("---", ""),
        ];
        for (input, want) in cases {
            assert_eq!(slugify(input), want, "slugify({input:?})");
        }
    }

    #[test]
    fn slug_is_one_safe_segment() {
        for input in ["a/b", "..", "../x", "a\0b", "x\\y", ". .", "\u{202e}evil"] {
            let s = slugify(input);
            assert!(!s.contains('/') && !s.contains('.') && !s.contains('\\') && !s.contains('\0'));
        }
    }

    #[test]
    fn timestamps_have_six_fraction_digits() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 2, 51, 19).unwrap();
        assert_eq!(timestamp_slug(&t), "2026-11-24t02-51-19-000000-00-00");
    }

    #[test]
    fn unique_timestamps_strictly_increase() {
        let mut prev = unique_timestamp();
        for _ in 0..10_000 {
            let next = unique_timestamp();
            assert!(next > prev);
            prev = next;
        }
    }

    #[test]
    fn unique_timestamps_across_threads_are_distinct() {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| (0..1000).map(|_| new_flow_key("f")).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<String> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn empty_slug_gets_a_segment() {
        assert_eq!(flow_slug("!!!"), "flow");
    }

    #[test]
    fn long_names_get_bounded_slugs() {
        let name = "a".repeat(10_000);
        assert_eq!(flow_slug(&name).len(), MAX_SLUG_LEN);
        let name = format!("{}-{}", "b".repeat(MAX_SLUG_LEN - 1), "c".repeat(50));
        assert_eq!(flow_slug(&name), "b".repeat(MAX_SLUG_LEN - 1));
    }
}
