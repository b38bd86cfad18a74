//! AWS Signature Version 4 verification for the fake CodeCommit API (written from AWS's public
//! description of SigV4 and checked against its published test-suite vector below).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("any key length");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
    let mut query: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(k, false), uri_encode(v, false))
        })
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
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
