//! Local servers that answer as the GitHub, GitLab, Bitbucket (Server and Cloud) and CodeCommit
//! APIs do, per their public API documentation — no real server of these runs on a laptop. One
//! process (`cargo xtask fake-apis PORT`) serves all four on one port, strictly: a wrong path,
//! a missing or wrong auth header, a wrong encoding or a bad SigV4 signature gets the provider's
//! error. Tests seed repositories with `POST /_fake/seed`.
//!
//! Paths served:
//! - GitHub: `GET /github/repos/{owner}/{repo}`, `GET /github/repos/{o}/{r}/commits/{ref}`,
//!   `GET /github/repos/{o}/{r}/contents/{path}?ref={sha}`; `Authorization: Bearer|token <t>`;
//!   404 `{"message": "Not Found"}`; rate limit (for the repository named in a
//!   `/_fake/rate-limit` request, toggled): 403 with `x-ratelimit-remaining: 0` and
//!   `x-ratelimit-reset`.
//! - GitLab: `GET /gitlab/api/v4/projects/{url-encoded path}`, `…/repository/files/{url-encoded
//!   path}?ref=`; `PRIVATE-TOKEN`; 401 `{"message": "401 Unauthorized"}`.
//! - Bitbucket Server: `GET /bbs/rest/api/1.0/projects/{p}/repos/{r}/raw/{path}?at=`,
//!   `…/repos/{r}/default-branch`; `Authorization: Bearer`.
//! - Bitbucket Cloud: `GET /bbc/2.0/repositories/{ws}/{r}`, `…/refs/branches`, `…/refs/tags`
//!   (paginated, 2 per page, `next` links), `…/src/{sha}/{path}`; basic auth; 429 once per
//!   `/_fake/throttle` request.
//! - CodeCommit: `POST /codecommit/` with `X-Amz-Target: CodeCommit_20150413.GetFile`, SigV4
//!   (service `codecommit`, region `us-east-1`) verified with the test secret.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use url::Url;

mod bitbucket;
mod codecommit;
mod github;
mod gitlab;

use bitbucket::{bitbucket_cloud, bitbucket_server};
use codecommit::codecommit;
use github::github;
use gitlab::gitlab;

/// The tokens the fake accepts.
pub const GITHUB_TOKEN: &str = "ghp_fake_github_token";
/// See [`GITHUB_TOKEN`].
pub const GITLAB_TOKEN: &str = "glpat-fake-gitlab-token";
/// See [`GITHUB_TOKEN`].
pub const BBS_TOKEN: &str = "bbs-fake-bearer-token";
/// Bitbucket Cloud username and app password.
pub const BBC_USER: &str = "flowstore";
/// See [`BBC_USER`].
pub const BBC_PASSWORD: &str = "bbc-fake-app-password";
/// Bitbucket Cloud: the Atlassian account email and API token (HTTP Basic), which replaced
/// app passwords (refused by the fake, as by Bitbucket Cloud since June 2026).
pub const BBC_EMAIL: &str = "flowstore@example.com";
/// See [`BBC_EMAIL`].
pub const BBC_API_TOKEN: &str = "ATATT-fake-bbc-api-token";
/// Bitbucket Cloud: a repository/project/workspace access token (Bearer).
pub const BBC_ACCESS_TOKEN: &str = "bbc-fake-access-token";
/// Bitbucket Server: a username and password (HTTP Basic), besides [`BBS_TOKEN`].
pub const BBS_USER: &str = "flowstore-server";
/// See [`BBS_USER`].
pub const BBS_PASSWORD: &str = "bbs-fake-password";
/// CodeCommit access key and secret.
pub const AWS_KEY: &str = "AKIAFAKECODECOMMIT";
/// See [`AWS_KEY`].
pub const AWS_SECRET: &str = "fake/codecommit/secret/key";

#[derive(Default, Clone)]
struct Repo {
    default_branch: String,
    branches: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    /// commit sha → path → content
    commits: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Default)]
struct State {
    repos: BTreeMap<String, Repo>,
    throttle: usize,
    /// GitHub repositories whose requests answer as rate-limited (per repository, so tests that
    /// run at the same time do not see each other's limit).
    rate_limited: std::collections::BTreeSet<String>,
}

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    raw_query: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn json_resp(status: u16, v: Value) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: v.to_string().into_bytes(),
    }
}

/// Decodes one percent-encoded path segment (`%2F` for a slash; `+` is a plus, as servers read a
/// path); `None` if the result is not UTF-8.
fn pct_decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Standard base64 (with padding), as the providers return file contents and as basic auth is sent.
fn b64(s: &str) -> String {
    BASE64.encode(s)
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let (path, raw_query, query) = parse_target(&target)?;
    Some(Request {
        method,
        path,
        query,
        raw_query,
        headers,
        body,
    })
}

/// A request target (`/a/b?q`, resolved against this server's origin) as its path (still
/// percent-encoded), its raw query, and its query parameters (decoded as a form: `+` is a space).
fn parse_target(target: &str) -> Option<(String, String, BTreeMap<String, String>)> {
    let url = Url::parse("http://127.0.0.1/").ok()?.join(target).ok()?;
    Some((
        url.path().to_string(),
        url.query().unwrap_or_default().to_string(),
        url.query_pairs().into_owned().collect(),
    ))
}

fn write_response(stream: &mut TcpStream, r: Response) {
    let mut head = format!(
        "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
        r.status,
        r.body.len()
    );
    for (k, v) in r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&r.body);
}

/// Serves forever on 127.0.0.1:`port` (the `fake-apis` subcommand).
pub fn serve(port: u16) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let state = Arc::new(Mutex::new(State::default()));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let state = state.clone();
        std::thread::spawn(move || {
            if let Some(req) = read_request(&mut stream) {
                let resp = route(&state, &req, port);
                write_response(&mut stream, resp);
            }
        });
    }
    Ok(())
}

fn route(state: &Mutex<State>, req: &Request, port: u16) -> Response {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    if req.path == "/_fake/seed" && req.method == "POST" {
        let Ok(v) = serde_json::from_slice::<Value>(&req.body) else {
            return json_resp(400, json!({"error": "bad seed"}));
        };
        let name = v["repo"].as_str().unwrap_or_default().to_string();
        let strings = |k: &str| -> BTreeMap<String, String> {
            v[k].as_object()
                .map(|m| {
                    m.iter()
                        .map(|(a, b)| (a.clone(), b.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let commits = v["commits"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(sha, files)| {
                        (
                            sha.clone(),
                            files
                                .as_object()
                                .map(|f| {
                                    f.iter()
                                        .map(|(p, c)| {
                                            (p.clone(), c.as_str().unwrap_or_default().to_string())
                                        })
                                        .collect()
                                })
                                .unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        st.repos.insert(
            name,
            Repo {
                default_branch: v["default_branch"].as_str().unwrap_or("main").to_string(),
                branches: strings("branches"),
                tags: strings("tags"),
                commits,
            },
        );
        return json_resp(200, json!({"ok": true}));
    }
    if req.path == "/_fake/throttle" {
        st.throttle += 1;
        return json_resp(200, json!({"throttle": st.throttle}));
    }
    if req.path == "/_fake/rate-limit" {
        let Some(repo) = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v["repo"].as_str().map(str::to_string))
        else {
            return json_resp(
                400,
                json!({"error": "rate-limit needs {\"repo\": \"owner/name\"}"}),
            );
        };
        let limited = !st.rate_limited.remove(&repo);
        if limited {
            st.rate_limited.insert(repo);
        }
        return json_resp(200, json!({"rate_limited": limited}));
    }
    if let Some(rest) = req.path.strip_prefix("/github/") {
        return github(&mut st, req, rest);
    }
    if let Some(rest) = req.path.strip_prefix("/gitlab/api/v4/") {
        return gitlab(&st, req, rest);
    }
    if let Some(rest) = req.path.strip_prefix("/bbs/rest/api/1.0/") {
        return bitbucket_server(&st, req, rest);
    }
    if let Some(rest) = req.path.strip_prefix("/bbc/2.0/") {
        return bitbucket_cloud(&mut st, req, rest, port);
    }
    if req.path == "/codecommit/" {
        return codecommit(&st, req, port);
    }
    json_resp(404, json!({"message": "Not Found"}))
}

fn resolve(repo: &Repo, r: &str) -> Option<String> {
    if repo.commits.contains_key(r) {
        return Some(r.to_string());
    }
    let r = r
        .strip_prefix("refs/heads/")
        .or_else(|| r.strip_prefix("refs/tags/"))
        .unwrap_or(r);
    repo.branches.get(r).or_else(|| repo.tags.get(r)).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_standard_with_padding() {
        assert_eq!(b64(""), "");
        assert_eq!(b64("f"), "Zg==");
        assert_eq!(b64("fo"), "Zm8=");
        assert_eq!(b64("foo"), "Zm9v");
        assert_eq!(b64("foob"), "Zm9vYg==");
        assert_eq!(b64("\u{1234}>?"), "4Yi0Pj8=");
    }

    #[test]
    fn targets_split_into_path_and_decoded_query() {
        let (path, raw, query) = parse_target(
            "/gitlab/api/v4/projects/org%2Frepo/repository/files/a%20b.py?ref=v1%2B2&x=a+b&&y",
        )
        .unwrap();
        assert_eq!(
            path,
            "/gitlab/api/v4/projects/org%2Frepo/repository/files/a%20b.py"
        );
        assert_eq!(raw, "ref=v1%2B2&x=a+b&&y");
        let want: BTreeMap<String, String> = [("ref", "v1+2"), ("x", "a b"), ("y", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(query, want);
        let (path, raw, query) = parse_target("/codecommit/").unwrap();
        assert_eq!((path.as_str(), raw.as_str()), ("/codecommit/", ""));
        assert!(query.is_empty());
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(pct_decode("org%2Frepo").as_deref(), Some("org/repo"));
        assert_eq!(pct_decode("%E1%88%B4~x").as_deref(), Some("\u{1234}~x"));
        assert_eq!(pct_decode("%FF"), None);
    }
}
