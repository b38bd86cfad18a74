//! The fake GitHub REST API (see the parent module for the paths served), answering as GitHub's
//! published OpenAPI description (github/rest-api-description, `api.github.com.json`) says for
//! `repos/get`, `repos/get-commit`, `repos/get-content` and `git/get-blob`, and as recorded
//! api.github.com traffic shows (PyGithub's `tests/ReplayData`):
//!
//! - `commits/{ref}`: `{ref}` is multi-segment (`x-multi-segment`: `feature/x` is sent with its
//!   slash; `%2F` names no commit: 422); `Accept: application/vnd.github.sha` answers the bare
//!   SHA; an empty repository answers 409 `Git Repository is empty.`.
//! - `contents/{path}?ref=`: a file is `{"type": "file", "encoding": "base64", "sha": <git blob
//!   id>, "size", "content", …}`; over 1 MB `"encoding": "none"` with empty `content` (the
//!   description: only the raw and object media types serve 1–100 MB); a directory is a JSON
//!   array of entries, or with `Accept: application/vnd.github.object+json` one object
//!   `{"type": "dir", "entries": […]}`; an unknown ref is 404 `No commit found for the ref …`.
//! - `git/blobs/{sha}`: the blob as JSON (base64), or raw with
//!   `Accept: application/vnd.github.raw+json`.
//! - Faults for one repository, set with `POST /github/_fake/fault` `{"repo", "on", "status",
//!   "times", "retry_after", "message"}` (`on`: a path part such as `commits/` or `contents/`,
//!   or `""` for every request): the next `times` matching requests answer `status` with that
//!   message and `Retry-After` (a secondary rate limit is 403 + `Retry-After`).
//! - `GET /github/_fake/requests?repo=owner/name`: the requests served for that repository
//!   (path and query as sent, `Accept`).

use std::sync::OnceLock;

use sha1::{Digest as _, Sha1};

use super::*;

/// Files over this many bytes are not served in the contents API's JSON (GitHub's 1 MB).
const CONTENTS_JSON_MAX: usize = 1024 * 1024;

/// One injected fault (see the module docs).
struct Fault {
    repo: String,
    on: String,
    status: u16,
    times: u32,
    retry_after: Option<u64>,
    message: String,
}

/// The requests served, per repository: (path as sent, query as sent, `Accept`), for tests
/// that check how flowstore asks (`GET /github/_fake/requests?repo=owner/name`).
fn requests() -> &'static Mutex<BTreeMap<String, Vec<Value>>> {
    static LOG: OnceLock<Mutex<BTreeMap<String, Vec<Value>>>> = OnceLock::new();
    LOG.get_or_init(Default::default)
}

fn faults() -> &'static Mutex<Vec<Fault>> {
    static FAULTS: OnceLock<Mutex<Vec<Fault>>> = OnceLock::new();
    FAULTS.get_or_init(Default::default)
}

/// The git blob id of `content` (`git hash-object`).
fn blob_sha(content: &str) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content.as_bytes());
    hex::encode(h.finalize())
}

/// An error answer: `basic-error` (`message`, `documentation_url`, `status`), or for 422
/// `validation-error` (which has no `status`).
fn error(status: u16, message: &str) -> Response {
    let mut body = json!({"message": message, "documentation_url": "https://docs.github.com/rest"});
    if status != 422 {
        body["status"] = json!(status.to_string());
    }
    json_resp(status, body)
}

fn add_fault(req: &Request) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&req.body) else {
        return json_resp(400, json!({"error": "fault needs a JSON body"}));
    };
    let Some(repo) = v["repo"].as_str() else {
        return json_resp(400, json!({"error": "fault needs \"repo\""}));
    };
    faults().lock().unwrap_or_else(|e| e.into_inner()).push(Fault {
        repo: repo.to_string(),
        on: v["on"].as_str().unwrap_or_default().to_string(),
        status: v["status"].as_u64().unwrap_or(403) as u16,
        times: v["times"].as_u64().unwrap_or(1) as u32,
        retry_after: v["retry_after"].as_u64(),
        message: v["message"]
            .as_str()
            .unwrap_or("You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")
            .to_string(),
    });
    json_resp(200, json!({"ok": true}))
}

/// The injected fault for this request, if one is pending (counting it down).
fn take_fault(key: &str, rest: &str) -> Option<Response> {
    let mut faults = faults().lock().unwrap_or_else(|e| e.into_inner());
    let i = faults
        .iter()
        .position(|f| f.repo == key && f.times > 0 && rest.contains(&f.on))?;
    let f = &mut faults[i];
    f.times -= 1;
    let mut r = error(f.status, &f.message);
    if let Some(s) = f.retry_after {
        r.headers.push(("retry-after".into(), s.to_string()));
    }
    r.headers
        .push(("x-ratelimit-remaining".into(), "4999".into()));
    if f.times == 0 {
        faults.remove(i);
    }
    Some(r)
}

/// The files and directories directly under `dir` ("" for the root) at one commit of the
/// repository whose API URL is `api`.
fn listing(api: &str, files: &BTreeMap<String, String>, dir: &str) -> Vec<Value> {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (path, content) in files {
        let Some(rest) = path.strip_prefix(&prefix) else {
            continue;
        };
        let (name, is_dir) = match rest.split_once('/') {
            Some((d, _)) => (d, true),
            None => (rest, false),
        };
        if !seen.insert(name.to_string()) {
            continue;
        }
        let full = format!("{prefix}{name}");
        let (kind, sha, size) = if is_dir {
            ("dir", "0".repeat(40), 0)
        } else {
            ("file", blob_sha(content), content.len())
        };
        let url = format!("{api}/contents/{full}");
        out.push(json!({
            "type": kind, "name": name, "path": full, "sha": sha, "size": size, "url": url,
            "git_url": null, "html_url": null, "download_url": null,
            "_links": {"git": null, "html": null, "self": url},
        }));
    }
    out
}

pub(super) fn github(st: &mut State, req: &Request, rest: &str) -> Response {
    if rest == "_fake/fault" && req.method == "POST" {
        return add_fault(req);
    }
    if rest == "_fake/requests" {
        let repo = req.query.get("repo").cloned().unwrap_or_default();
        let log = requests().lock().unwrap_or_else(|e| e.into_inner());
        return json_resp(200, json!(log.get(&repo).cloned().unwrap_or_default()));
    }
    let auth = req
        .headers
        .get("authorization")
        .map(String::as_str)
        .unwrap_or("");
    let authed =
        auth == format!("Bearer {GITHUB_TOKEN}") || auth == format!("token {GITHUB_TOKEN}");
    if !auth.is_empty() && !authed {
        return error(401, "Bad credentials");
    }
    let repo_key = rest.strip_prefix("repos/").and_then(|r| {
        let mut seg = r.splitn(3, '/');
        Some(format!("{}/{}", seg.next()?, seg.next()?))
    });
    if let Some(key) = &repo_key {
        let mut log = requests().lock().unwrap_or_else(|e| e.into_inner());
        let seen = log.entry(key.clone()).or_default();
        if seen.len() < 1000 {
            seen.push(json!({
                "path": req.path, "query": req.raw_query,
                "accept": req.headers.get("accept").cloned().unwrap_or_default(),
            }));
        }
        drop(log);
        if st.rate_limited.contains(key) {
            let mut r = error(403, "API rate limit exceeded for 127.0.0.1.");
            r.headers.push(("x-ratelimit-remaining".into(), "0".into()));
            r.headers
                .push(("x-ratelimit-reset".into(), "4102444800".into()));
            return r;
        }
        if let Some(r) = take_fault(key, rest) {
            return r;
        }
    }
    let accept = req.headers.get("accept").cloned().unwrap_or_default();
    if req.method != "GET" || !accept.contains("application/vnd.github") {
        return error(
            415,
            "Unsupported Media Type: send Accept: application/vnd.github+json",
        );
    }
    let Some(rest) = rest.strip_prefix("repos/") else {
        return error(404, "Not Found");
    };
    let mut seg = rest.splitn(4, '/');
    let (Some(owner), Some(name)) = (seg.next(), seg.next()) else {
        return error(404, "Not Found");
    };
    let key = format!("{owner}/{name}");
    // Private repositories: visible only with the token, as GitHub answers 404 (not 401) otherwise.
    let Some(repo) = st.repos.get(&key).filter(|_| authed) else {
        return error(404, "Not Found");
    };
    let empty = repo.branches.is_empty() && repo.commits.is_empty();
    // The URLs answers carry, as api.github.com writes them.
    let api = format!("https://api.github.com/repos/{key}");
    match (seg.next(), seg.next()) {
        (None, _) => json_resp(
            200,
            json!({"name": name, "full_name": key, "owner": {"login": owner}, "default_branch": repo.default_branch, "private": true, "size": 0}),
        ),
        (Some("commits"), Some(raw)) => {
            if empty {
                return error(409, "Git Repository is empty.");
            }
            // `{ref}` is multi-segment: each segment decoded on its own; an encoded slash is
            // not a separator, so `feature%2Fx` names no commit.
            let shown = pct_decode(raw).unwrap_or_else(|| raw.to_string());
            let decoded: Option<Vec<String>> = raw
                .split('/')
                .map(|s| pct_decode(s).filter(|d| !d.contains('/')))
                .collect();
            let sha = decoded.and_then(|parts| resolve(repo, &parts.join("/")));
            match sha {
                Some(sha) if accept.contains("application/vnd.github.sha") => Response {
                    status: 200,
                    headers: vec![(
                        "content-type".into(),
                        "application/vnd.github.sha; charset=utf-8".into(),
                    )],
                    body: sha.into_bytes(),
                },
                Some(sha) => json_resp(
                    200,
                    json!({"sha": sha, "commit": {"message": "fake commit"}, "files": []}),
                ),
                None => error(422, &format!("No commit found for SHA: {shown}")),
            }
        }
        (Some("contents"), path) => {
            let Some(path) = pct_decode(path.unwrap_or_default()) else {
                return error(404, "Not Found");
            };
            let path = path.trim_end_matches('/').to_string();
            // No `ref` (or an empty one): the default branch.
            let r = match req.query.get("ref").filter(|r| !r.is_empty()) {
                Some(r) => r.clone(),
                None => repo.default_branch.clone(),
            };
            let Some(files) = resolve(repo, &r).and_then(|sha| repo.commits.get(&sha)) else {
                return error(404, &format!("No commit found for the ref {r}"));
            };
            if let Some(content) = files.get(&path) {
                let large = content.len() > CONTENTS_JSON_MAX;
                let name = path.rsplit('/').next().unwrap_or(&path);
                let url = format!("{api}/contents/{path}?ref={r}");
                return json_resp(
                    200,
                    json!({
                        "type": "file", "name": name, "path": path, "sha": blob_sha(content),
                        "size": content.len(),
                        "encoding": if large { "none" } else { "base64" },
                        "content": if large { String::new() } else { b64(content) },
                        "url": url, "git_url": null, "html_url": null, "download_url": null,
                        "_links": {"git": null, "html": null, "self": url},
                    }),
                );
            }
            let entries = listing(&api, files, &path);
            if entries.is_empty() {
                return error(404, "Not Found");
            }
            if !accept.contains("application/vnd.github.object") {
                return json_resp(200, Value::Array(entries));
            }
            let url = format!("{api}/contents/{path}?ref={r}");
            json_resp(
                200,
                json!({
                    "type": "dir", "name": path.rsplit('/').next().unwrap_or_default(),
                    "path": path, "sha": "0".repeat(40), "size": 0, "url": url,
                    "git_url": null, "html_url": null, "download_url": null,
                    "_links": {"git": null, "html": null, "self": url}, "entries": entries,
                }),
            )
        }
        (Some("git"), Some(tail)) => {
            let Some(id) = tail.strip_prefix("blobs/") else {
                return error(404, "Not Found");
            };
            let found = repo
                .commits
                .values()
                .flat_map(|files| files.values())
                .find(|c| blob_sha(c) == id);
            match found {
                Some(c) if accept.contains("application/vnd.github.raw") => Response {
                    status: 200,
                    headers: vec![("content-type".into(), "application/vnd.github.raw".into())],
                    body: c.clone().into_bytes(),
                },
                Some(c) => json_resp(
                    200,
                    json!({"sha": id, "size": c.len(), "url": format!("{api}/git/blobs/{id}"), "node_id": "", "content": b64(c), "encoding": "base64"}),
                ),
                None => error(404, "Not Found"),
            }
        }
        _ => error(404, "Not Found"),
    }
}
