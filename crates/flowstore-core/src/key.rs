//! The key scheme: `<slug(flow name)>/<slug(UTC timestamp)>`, the same keys Prefect 1 writes.
//!
//! [`slugify`] reproduces python-slugify's default output, so keys written by flowstore and by
//! Python tools agree. Timestamps always carry six fraction digits (Python drops them when the
//! microseconds are zero), so keys sort by time as strings, and [`unique_timestamp`] never hands
//! out the same instant twice in one process.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use unicode_normalization::UnicodeNormalization;

/// Turns any text into a key segment exactly as python-slugify does with its defaults, with the
/// transliteration Prefect 1 installs (text-unidecode), so keys written by flowstore and by
/// Prefect 1 agree.
///
/// python-slugify's steps, in its order: every `'` becomes `-`; the text is decomposed (NFKD)
/// and transliterated to ASCII, where characters outside the Basic Multilingual Plane (emoji,
/// historic scripts, private use planes) are dropped, as text-unidecode drops them; HTML
/// character references (the HTML 4 names, `&#65;`, `&#x41;`) are decoded; the text is
/// decomposed again and lowercased; quotes and the commas inside numbers (`1,000` → `1000`) are
/// removed; every run of characters outside `[a-z0-9]` becomes one `-`, and `-` is trimmed from
/// both ends. The result never contains `/`, `.` or `..`, so a slug is always a single safe path
/// segment (it may be empty for input without letters or digits).
///
/// `tests/slugify_python.rs` holds this against python-slugify itself for every code point.
///
/// ```
/// use flowstore_core::key::slugify;
/// assert_eq!(slugify("My ETL Flow"), "my-etl-flow");
/// assert_eq!(slugify("Café Flow"), "cafe-flow");
/// assert_eq!(slugify("emoji 🚀 flow"), "emoji-flow");
/// assert_eq!(slugify("!&& ~~ cool flow :shades:"), "cool-flow-shades");
/// assert_eq!(slugify("../../etc/passwd"), "etc-passwd");
/// assert_eq!(slugify("Ünïcödé Straße"), "unicode-strasse");
/// ```
pub fn slugify(text: &str) -> String {
    // Quotes become separators before transliteration (python-slugify's QUOTE_PATTERN).
    let text = text.replace('\'', "-");
    let text = if text.is_ascii() {
        text
    } else {
        transliterate_nfkd(&text)
    };
    let text = decode_char_references(&text);
    let text: Vec<char> = if text.is_ascii() {
        text.chars().collect()
    } else {
        text.nfkd().collect()
    };
    // Lowercasing only matters for ASCII letters here: after NFKD no character lowercases to
    // one (U+0130 and U+212A, the two that would, have decomposed). Quotes produced by
    // transliteration or by a reference are removed, not separated.
    let text: Vec<char> = text
        .into_iter()
        .filter(|&c| c != '\'')
        .map(|c| c.to_ascii_lowercase())
        .collect();

    let mut out = String::with_capacity(text.len());
    let mut pending_dash = false;
    for (i, &c) in text.iter().enumerate() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c);
        } else if is_number_comma(&text, i) {
            // `1,000` → `1000`: removed, not a separator.
        } else {
            pending_dash = true;
        }
    }
    out
}

/// Whether `text[i]` is a comma between two digits, which python-slugify removes. Its `\d` also
/// matches non-ASCII digits, but those become separators anyway, so the slug is the same.
fn is_number_comma(text: &[char], i: usize) -> bool {
    text[i] == ','
        && i > 0
        && text[i - 1].is_ascii_digit()
        && text.get(i + 1).is_some_and(|n| n.is_ascii_digit())
}

/// text-unidecode's transliteration of the decomposed (NFKD) text: one ASCII string per BMP
/// character, nothing for a character beyond U+FFFF (its table stops there). ASCII maps to
/// itself, so this is also what python-slugify does with text that decomposes to ASCII.
///
/// The `unidecode` crate carries the same Text::Unidecode table (another revision); the code
/// points where the two revisions differ are mapped here as text-unidecode maps them.
fn transliterate_nfkd(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfkd() {
        if c.is_ascii() {
            out.push(c);
        } else if (c as u32) <= 0xFFFF {
            out.push_str(transliterate_bmp(c));
        }
    }
    out
}

/// One BMP character's transliteration, as text-unidecode 1.3 gives it: the `unidecode` crate's,
/// but where text-unidecode's revision of the table differs. It has no guesses for the C1
/// controls (the crate reads them as Windows-1252) and no transliteration for a few characters
/// the crate's revision added. (Its `[?] ` with a trailing space at some page ends, where the
/// crate has `[?]`, makes no difference to a slug.)
fn transliterate_bmp(c: char) -> &'static str {
    match c as u32 {
        0x80..=0x9F | 0x2E5..=0x2EB | 0xFDF0..=0xFDFB => "",
        0x25F4..=0x25F7 => "#",
        0x2EF..=0x2FF
        | 0x3F4..=0x3F9
        | 0x3FC..=0x3FF
        | 0x6FF
        | 0xAF0..=0xAF1
        | 0xAF9
        | 0x13F5
        | 0x13F8..=0x13FD
        | 0x1EFA..=0x1EFF
        | 0x25F8..=0x25FF
        | 0x30FF
        | 0x33FF
        | 0xFDFC..=0xFDFD => "[?]",
        _ => unidecode::unidecode_char(c),
    }
}

/// Decodes HTML character references as python-slugify does, in its three passes: the HTML 4
/// named references, then decimal `&#65;`, then hexadecimal `&#x41;` (lowercase `x` only). A
/// pass's output is the next pass's input, so `&amp;#65;` decodes to `A`. A numeric pass that
/// meets a reference beyond U+10FFFF decodes nothing at all (Python's `chr` raises and the whole
/// substitution is abandoned); a reference to a surrogate decodes to a character that, like
/// Python's lone surrogate, becomes a separator.
///
/// Not reproduced: Python's `\d` in the hexadecimal pass also matches non-ASCII decimal digits
/// that the decimal pass produced (`&#x&#1633;;`); such text keeps its references here.
fn decode_char_references(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let text = replace_references(text, named_reference, false);
    let text = replace_references(&text, |body| numeric_reference(body, "#", 10), true);
    replace_references(&text, |body| numeric_reference(body, "#x", 16), true)
}

/// A reference found after a `&`: how many bytes it spans after the `&` (through its `;`) and
/// what it decodes to (`None`: a character Python's `chr` refuses).
type Reference = (usize, Option<char>);

/// Replaces every reference `parse` recognises after a `&`, scanning left to right as `re.sub`
/// does. With `all_or_nothing`, one reference that decodes to no character leaves the text as
/// it was.
fn replace_references(
    text: &str,
    parse: impl Fn(&str) -> Option<Reference>,
    all_or_nothing: bool,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match parse(after) {
            Some((len, Some(decoded))) => {
                out.push(decoded);
                rest = &after[len..];
            }
            Some((_, None)) if all_or_nothing => return text.to_string(),
            Some((len, None)) => {
                out.push('&');
                out.push_str(&after[..len]);
                rest = &after[len..];
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

/// `name;` for one of the HTML 4 names (case-sensitive).
fn named_reference(body: &str) -> Option<Reference> {
    let semi = body.bytes().take(9).position(|b| b == b';')?;
    let name = &body[..semi];
    let i = HTML4_ENTITIES
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()?;
    Some((semi + 1, char::from_u32(HTML4_ENTITIES[i].1)))
}

/// Python's `int(digits, radix)` limit for decimal strings (Python 3.11 and the 3.7–3.10
/// security releases): longer digit strings raise, like an out-of-range value.
const PYTHON_INT_MAX_STR_DIGITS: usize = 4300;

/// `#65;` (with `prefix` `#`, radix 10) or `#x41;` (prefix `#x`, radix 16).
fn numeric_reference(body: &str, prefix: &str, radix: u32) -> Option<Reference> {
    let digits = body.strip_prefix(prefix)?;
    let len = digits
        .bytes()
        .position(|b| !(b as char).is_digit(radix))
        .unwrap_or(digits.len());
    if len == 0 || digits.as_bytes().get(len) != Some(&b';') {
        return None;
    }
    let consumed = prefix.len() + len + 1;
    if radix == 10 && len > PYTHON_INT_MAX_STR_DIGITS {
        return Some((consumed, None));
    }
    let mut value: u32 = 0;
    for d in digits[..len].chars() {
        let digit = d.to_digit(radix).expect("checked above");
        value = match value.checked_mul(radix).and_then(|v| v.checked_add(digit)) {
            Some(v) if v <= 0x10FFFF => v,
            _ => return Some((consumed, None)),
        };
    }
    let decoded = char::from_u32(value).unwrap_or(SURROGATE_STAND_IN);
    Some((consumed, Some(decoded)))
}

/// Stands in for a lone surrogate, which Python's `chr` makes but a Rust string cannot hold:
/// both stay non-ASCII through NFKD and lowercasing, so both end as a separator.
const SURROGATE_STAND_IN: char = '\u{FFFD}';

/// HTML 4.01's 252 character entity references (the set Python's `html.entities.name2codepoint`
/// holds, which python-slugify decodes), sorted by name for binary search.
const HTML4_ENTITIES: [(&str, u32); 252] = [
    ("AElig", 0xC6),
    ("Aacute", 0xC1),
    ("Acirc", 0xC2),
    ("Agrave", 0xC0),
    ("Alpha", 0x391),
    ("Aring", 0xC5),
    ("Atilde", 0xC3),
    ("Auml", 0xC4),
    ("Beta", 0x392),
    ("Ccedil", 0xC7),
    ("Chi", 0x3A7),
    ("Dagger", 0x2021),
    ("Delta", 0x394),
    ("ETH", 0xD0),
    ("Eacute", 0xC9),
    ("Ecirc", 0xCA),
    ("Egrave", 0xC8),
    ("Epsilon", 0x395),
    ("Eta", 0x397),
    ("Euml", 0xCB),
    ("Gamma", 0x393),
    ("Iacute", 0xCD),
    ("Icirc", 0xCE),
    ("Igrave", 0xCC),
    ("Iota", 0x399),
    ("Iuml", 0xCF),
    ("Kappa", 0x39A),
    ("Lambda", 0x39B),
    ("Mu", 0x39C),
    ("Ntilde", 0xD1),
    ("Nu", 0x39D),
    ("OElig", 0x152),
    ("Oacute", 0xD3),
    ("Ocirc", 0xD4),
    ("Ograve", 0xD2),
    ("Omega", 0x3A9),
    ("Omicron", 0x39F),
    ("Oslash", 0xD8),
    ("Otilde", 0xD5),
    ("Ouml", 0xD6),
    ("Phi", 0x3A6),
    ("Pi", 0x3A0),
    ("Prime", 0x2033),
    ("Psi", 0x3A8),
    ("Rho", 0x3A1),
    ("Scaron", 0x160),
    ("Sigma", 0x3A3),
    ("THORN", 0xDE),
    ("Tau", 0x3A4),
    ("Theta", 0x398),
    ("Uacute", 0xDA),
    ("Ucirc", 0xDB),
    ("Ugrave", 0xD9),
    ("Upsilon", 0x3A5),
    ("Uuml", 0xDC),
    ("Xi", 0x39E),
    ("Yacute", 0xDD),
    ("Yuml", 0x178),
    ("Zeta", 0x396),
    ("aacute", 0xE1),
    ("acirc", 0xE2),
    ("acute", 0xB4),
    ("aelig", 0xE6),
    ("agrave", 0xE0),
    ("alefsym", 0x2135),
    ("alpha", 0x3B1),
    ("amp", 0x26),
    ("and", 0x2227),
    ("ang", 0x2220),
    ("aring", 0xE5),
    ("asymp", 0x2248),
    ("atilde", 0xE3),
    ("auml", 0xE4),
    ("bdquo", 0x201E),
    ("beta", 0x3B2),
    ("brvbar", 0xA6),
    ("bull", 0x2022),
    ("cap", 0x2229),
    ("ccedil", 0xE7),
    ("cedil", 0xB8),
    ("cent", 0xA2),
    ("chi", 0x3C7),
    ("circ", 0x2C6),
    ("clubs", 0x2663),
    ("cong", 0x2245),
    ("copy", 0xA9),
    ("crarr", 0x21B5),
    ("cup", 0x222A),
    ("curren", 0xA4),
    ("dArr", 0x21D3),
    ("dagger", 0x2020),
    ("darr", 0x2193),
    ("deg", 0xB0),
    ("delta", 0x3B4),
    ("diams", 0x2666),
    ("divide", 0xF7),
    ("eacute", 0xE9),
    ("ecirc", 0xEA),
    ("egrave", 0xE8),
    ("empty", 0x2205),
    ("emsp", 0x2003),
    ("ensp", 0x2002),
    ("epsilon", 0x3B5),
    ("equiv", 0x2261),
    ("eta", 0x3B7),
    ("eth", 0xF0),
    ("euml", 0xEB),
    ("euro", 0x20AC),
    ("exist", 0x2203),
    ("fnof", 0x192),
    ("forall", 0x2200),
    ("frac12", 0xBD),
    ("frac14", 0xBC),
    ("frac34", 0xBE),
    ("frasl", 0x2044),
    ("gamma", 0x3B3),
    ("ge", 0x2265),
    ("gt", 0x3E),
    ("hArr", 0x21D4),
    ("harr", 0x2194),
    ("hearts", 0x2665),
    ("hellip", 0x2026),
    ("iacute", 0xED),
    ("icirc", 0xEE),
    ("iexcl", 0xA1),
    ("igrave", 0xEC),
    ("image", 0x2111),
    ("infin", 0x221E),
    ("int", 0x222B),
    ("iota", 0x3B9),
    ("iquest", 0xBF),
    ("isin", 0x2208),
    ("iuml", 0xEF),
    ("kappa", 0x3BA),
    ("lArr", 0x21D0),
    ("lambda", 0x3BB),
    ("lang", 0x2329),
    ("laquo", 0xAB),
    ("larr", 0x2190),
    ("lceil", 0x2308),
    ("ldquo", 0x201C),
    ("le", 0x2264),
    ("lfloor", 0x230A),
    ("lowast", 0x2217),
    ("loz", 0x25CA),
    ("lrm", 0x200E),
    ("lsaquo", 0x2039),
    ("lsquo", 0x2018),
    ("lt", 0x3C),
    ("macr", 0xAF),
    ("mdash", 0x2014),
    ("micro", 0xB5),
    ("middot", 0xB7),
    ("minus", 0x2212),
    ("mu", 0x3BC),
    ("nabla", 0x2207),
    ("nbsp", 0xA0),
    ("ndash", 0x2013),
    ("ne", 0x2260),
    ("ni", 0x220B),
    ("not", 0xAC),
    ("notin", 0x2209),
    ("nsub", 0x2284),
    ("ntilde", 0xF1),
    ("nu", 0x3BD),
    ("oacute", 0xF3),
    ("ocirc", 0xF4),
    ("oelig", 0x153),
    ("ograve", 0xF2),
    ("oline", 0x203E),
    ("omega", 0x3C9),
    ("omicron", 0x3BF),
    ("oplus", 0x2295),
    ("or", 0x2228),
    ("ordf", 0xAA),
    ("ordm", 0xBA),
    ("oslash", 0xF8),
    ("otilde", 0xF5),
    ("otimes", 0x2297),
    ("ouml", 0xF6),
    ("para", 0xB6),
    ("part", 0x2202),
    ("permil", 0x2030),
    ("perp", 0x22A5),
    ("phi", 0x3C6),
    ("pi", 0x3C0),
    ("piv", 0x3D6),
    ("plusmn", 0xB1),
    ("pound", 0xA3),
    ("prime", 0x2032),
    ("prod", 0x220F),
    ("prop", 0x221D),
    ("psi", 0x3C8),
    ("quot", 0x22),
    ("rArr", 0x21D2),
    ("radic", 0x221A),
    ("rang", 0x232A),
    ("raquo", 0xBB),
    ("rarr", 0x2192),
    ("rceil", 0x2309),
    ("rdquo", 0x201D),
    ("real", 0x211C),
    ("reg", 0xAE),
    ("rfloor", 0x230B),
    ("rho", 0x3C1),
    ("rlm", 0x200F),
    ("rsaquo", 0x203A),
    ("rsquo", 0x2019),
    ("sbquo", 0x201A),
    ("scaron", 0x161),
    ("sdot", 0x22C5),
    ("sect", 0xA7),
    ("shy", 0xAD),
    ("sigma", 0x3C3),
    ("sigmaf", 0x3C2),
    ("sim", 0x223C),
    ("spades", 0x2660),
    ("sub", 0x2282),
    ("sube", 0x2286),
    ("sum", 0x2211),
    ("sup", 0x2283),
    ("sup1", 0xB9),
    ("sup2", 0xB2),
    ("sup3", 0xB3),
    ("supe", 0x2287),
    ("szlig", 0xDF),
    ("tau", 0x3C4),
    ("there4", 0x2234),
    ("theta", 0x3B8),
    ("thetasym", 0x3D1),
    ("thinsp", 0x2009),
    ("thorn", 0xFE),
    ("tilde", 0x2DC),
    ("times", 0xD7),
    ("trade", 0x2122),
    ("uArr", 0x21D1),
    ("uacute", 0xFA),
    ("uarr", 0x2191),
    ("ucirc", 0xFB),
    ("ugrave", 0xF9),
    ("uml", 0xA8),
    ("upsih", 0x3D2),
    ("upsilon", 0x3C5),
    ("uuml", 0xFC),
    ("weierp", 0x2118),
    ("xi", 0x3BE),
    ("yacute", 0xFD),
    ("yen", 0xA5),
    ("yuml", 0xFF),
    ("zeta", 0x3B6),
    ("zwj", 0x200D),
    ("zwnj", 0x200C),
];

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

    /// What python-slugify 9.2.0 with text-unidecode 1.3 (as `pip install prefect==1.4.1`
    /// installs them, Python 3.11) returned for these inputs; `tests/slugify_python.rs` checks
    /// every code point against the real thing when a Prefect 1 Python is at hand.
    #[test]
    fn slugify_matches_recorded_python_slugify() {
        let cases = [
            // Beyond the BMP: dropped, as text-unidecode drops it (deunicode said "rocket").
            ("emoji \u{1F680} flow", "emoji-flow"),
            // But decomposed first: MATHEMATICAL BOLD CAPITAL A is an A.
            ("\u{1D400}BC", "abc"),
            // References are decoded after transliteration: the decoded é keeps its accent
            // as a separate mark, which becomes a separator.
            ("&#233;t&#233;", "e-te"),
            ("caf&eacute;", "cafe"),
            ("&apos;s", "apos-s"),
            ("a&#39;b", "ab"),
            ("&amp;#65;", "a"),
            ("&#65;&#1114112;", "65-1114112"),
            ("&#55296;x", "x"),
            ("&#X41;", "x41"),
            ("1&frac12;", "11-2"),
            ("&trade;", "tm"),
            ("don\u{2019}t", "dont"),
            ("1\u{2019},000", "1000"),
            ("\u{152}uvre", "oeuvre"),
            ("\u{210C}ello", "hello"),
            ("\u{216B}", "xii"),
            ("\u{2460}\u{2461}", "12"),
            ("\u{FB01}le", "file"),
            // C1 controls: text-unidecode has no Windows-1252 guesses for them.
            ("\u{80}x", "x"),
            ("a\u{8C}b", "ab"),
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
