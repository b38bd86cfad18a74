//! AWS Signature Version 4 verification for the fake CodeCommit API (written from AWS's public
//! description of SigV4 and checked against its published test-suite vector below).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use url::form_urlencoded;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("any key length");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// Everything but SigV4's unreserved characters (`A-Z a-z 0-9 - _ . ~`) is percent-encoded.
const SIGV4_ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// [`SIGV4_ENCODED`], but `/` is kept (a path).
const SIGV4_ENCODED_PATH: &AsciiSet = &SIGV4_ENCODED.remove(b'/');

/// SigV4's `UriEncode`: every byte but the unreserved characters (and `/` when `keep_slash`) as
/// `%XX`, upper-case hex.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let set = if keep_slash {
        SIGV4_ENCODED_PATH
    } else {
        SIGV4_ENCODED
    };
    utf8_percent_encode(s, set).to_string()
}

/// The canonical query string: each parameter's name and value decoded from the request, then
/// `UriEncode`d, sorted by name (then value), joined with `&`.
fn canonical_query(raw_query: &str) -> String {
    let mut query: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
        .collect();
    query.sort();
    query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The signature AWS expects for a request (hex).
#[allow(clippy::too_many_arguments)]
pub fn expected_signature(
    method: &str,
    path: &str,
    raw_query: &str,
    headers: &BTreeMap<String, String>,
    signed_headers: &[&str],
    body: &[u8],
    secret: &str,
    amz_date: &str,
    scope: &str,
) -> String {
    let canonical_query = canonical_query(raw_query);
    let canonical_headers: String = signed_headers
        .iter()
        .map(|h| format!("{h}:{}\n", headers.get(*h).map(|v| v.trim()).unwrap_or("")))
        .collect();
    let creq = format!(
        "{method}\n{}\n{canonical_query}\n{canonical_headers}\n{}\n{}",
        uri_encode(path, true),
        signed_headers.join(";"),
        hex::encode(Sha256::digest(body))
    );
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(creq.as_bytes()))
    );
    let parts: Vec<&str> = scope.split('/').collect();
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), parts[0]);
    let k_region = hmac(&k_date, parts[1]);
    let k_service = hmac(&k_region, parts[2]);
    let k_signing = hmac(&k_service, "aws4_request");
    hex::encode(hmac(&k_signing, &sts))
}

/// Verifies a request's `Authorization` header. Errors say what is wrong, as AWS does.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    method: &str,
    path: &str,
    raw_query: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    key: &str,
    secret: &str,
    service: &str,
    _host: &str,
) -> Result<(), String> {
    let auth = headers
        .get("authorization")
        .ok_or("Missing Authentication Token")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("Unsupported authorization type")?;
    let mut fields = BTreeMap::new();
    for part in rest.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            fields.insert(k, v);
        }
    }
    let credential = fields
        .get("Credential")
        .ok_or("Authorization header requires 'Credential'")?;
    let (access_key, scope) = credential
        .split_once('/')
        .ok_or("Credential should be scoped")?;
    if access_key != key {
        return Err("The security token included in the request is invalid.".into());
    }
    if scope.split('/').nth(2) != Some(service) || !scope.ends_with("/aws4_request") {
        return Err(format!(
            "Credential should be scoped to correct service: '{service}'."
        ));
    }
    let signed: Vec<&str> = fields
        .get("SignedHeaders")
        .ok_or("Authorization header requires 'SignedHeaders'")?
        .split(';')
        .collect();
    if !signed.contains(&"host") || !signed.contains(&"x-amz-date") {
        return Err("host and x-amz-date must be signed".into());
    }
    let amz_date = headers.get("x-amz-date").ok_or("Missing x-amz-date")?;
    let expected = expected_signature(
        method, path, raw_query, headers, &signed, body, secret, amz_date, scope,
    );
    if fields.get("Signature") != Some(&expected.as_str()) {
        return Err(
            "The request signature we calculated does not match the signature you provided.".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `UriEncode` as the SigV4 description has it: unreserved characters kept, `/` kept only in
    /// a path, everything else `%XX` with upper-case hex (a space is `%20`, never `+`).
    #[test]
    fn uri_encode_keeps_exactly_the_unreserved_characters() {
        assert_eq!(
            uri_encode("/my key/photo~1+2.jpg", true),
            "/my%20key/photo~1%2B2.jpg"
        );
        assert_eq!(
            uri_encode("/my key/photo~1+2.jpg", false),
            "%2Fmy%20key%2Fphoto~1%2B2.jpg"
        );
        // Test-suite `get-unreserved` and `get-utf8` paths.
        let unreserved = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        assert_eq!(uri_encode(unreserved, true), unreserved);
        assert_eq!(uri_encode("/\u{1234}", true), "/%E1%88%B4");
        assert_eq!(
            uri_encode("!\"#$%&'()*,:;<=>?@[\\]^`{|}", false),
            "%21%22%23%24%25%26%27%28%29%2A%2C%3A%3B%3C%3D%3E%3F%40%5B%5C%5D%5E%60%7B%7C%7D"
        );
    }

    /// The canonical query: sorted by name, then value; names and values decoded, then encoded.
    #[test]
    fn canonical_query_sorts_and_encodes_once() {
        assert_eq!(canonical_query(""), "");
        assert_eq!(
            canonical_query("Param2=value2&Param1=value1"),
            "Param1=value1&Param2=value2"
        );
        assert_eq!(
            canonical_query("Param1=value2&Param1=value1"),
            "Param1=value1&Param1=value2"
        );
        assert_eq!(canonical_query("%E1%88%B4=bar"), "%E1%88%B4=bar");
        assert_eq!(canonical_query("a=b%2Fc&k"), "a=b%2Fc&k=");
    }

    fn suite_signature(method: &str, path: &str, raw_query: &str) -> String {
        let mut h = BTreeMap::new();
        h.insert("host".to_string(), "example.amazonaws.com".to_string());
        h.insert("x-amz-date".to_string(), "20150830T123600Z".to_string());
        expected_signature(
            method,
            path,
            raw_query,
            &h,
            &["host", "x-amz-date"],
            b"",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830T123600Z",
            "20150830/us-east-1/service/aws4_request",
        )
    }

    /// AWS SigV4 test suite, `get-vanilla-query-order-key-case` and `get-space-unnormalized`
    /// (the path with a space, as the suite's request has it before it is sent).
    #[test]
    fn matches_the_published_query_and_space_vectors() {
        assert_eq!(
            suite_signature("GET", "/", "Param2=value2&Param1=value1"),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
        assert_eq!(
            suite_signature("GET", "/example space/", ""),
            "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"
        );
    }

    /// AWS SigV4 test suite, `post-vanilla`.
    #[test]
    fn matches_the_published_post_vanilla_vector() {
        let mut h = BTreeMap::new();
        h.insert("host".to_string(), "example.amazonaws.com".to_string());
        h.insert("x-amz-date".to_string(), "20150830T123600Z".to_string());
        let sig = expected_signature(
            "POST",
            "/",
            "",
            &h,
            &["host", "x-amz-date"],
            b"",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830T123600Z",
            "20150830/us-east-1/service/aws4_request",
        );
        assert_eq!(
            sig,
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
        h.insert(
            "authorization".into(),
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"),
        );
        verify(
            "POST",
            "/",
            "",
            &h,
            b"",
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "service",
            "",
        )
        .unwrap();
        assert!(verify(
            "POST",
            "/",
            "",
            &h,
            b"x",
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "service",
            ""
        )
        .is_err());
    }
}
