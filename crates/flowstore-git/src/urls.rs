//! What the storages' `from_url` share: percent-decoding and the `key=value` pairs of a URL's
//! query and fragment (the URL itself is parsed once, by [`flowstore_core::raw::config::parse_url`]).

use flowstore_core::raw::config::Url;

/// Percent-decodes `s` (malformed escapes kept, invalid UTF-8 replaced).
pub(crate) fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The `key=value` pairs of a query or fragment, parsed by `form_urlencoded` with one
/// difference: a `+` stays a `+` (git refs and tags may contain one; write a space as `%20`).
/// A bare `key` is `key=""`.
pub(crate) fn pairs(text: Option<&str>) -> Vec<(String, String)> {
    let text = text.unwrap_or_default().replace('+', "%2B");
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

/// Every pair of the URL's query, then of its fragment.
pub(crate) fn url_pairs(url: &Url) -> Vec<(String, String)> {
    let mut all = pairs(url.query());
    all.extend(pairs(url.fragment()));
    all
}

/// The URL's host, with its port when it has one (`127.0.0.1:9418`); `None` without a host.
pub(crate) fn host_port(url: &Url) -> Option<String> {
    let host = url.host_str().filter(|h| !h.is_empty())?;
    Some(match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

/// The URL's path segments, percent-decoded, empty ones dropped.
pub(crate) fn segments(url: &Url) -> Vec<String> {
    url.path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_decoded_and_plus_is_kept() {
        let u =
            Url::parse("git+https://h/o/r.git?label=a%2Cb&x#branch=feat%2Fx&tag=v1+b&pin").unwrap();
        assert_eq!(
            url_pairs(&u),
            [
                ("label", "a,b"),
                ("x", ""),
                ("branch", "feat/x"),
                ("tag", "v1+b"),
                ("pin", "")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let u = Url::parse("github://Owner/Repo/my%20dir/f.py").unwrap();
        assert_eq!(
            host_port(&u).as_deref(),
            Some("Owner"),
            "opaque hosts keep their case"
        );
        assert_eq!(segments(&u), ["Repo", "my dir", "f.py"]);
        let u = Url::parse("git://127.0.0.1:9418/o/r").unwrap();
        assert_eq!(host_port(&u).as_deref(), Some("127.0.0.1:9418"));
    }
}
