//! The fake GitLab REST API (see the parent module for the paths served), answering as GitLab's
//! v4 API documentation says:
//!
//! - `PRIVATE-TOKEN`: [`GITLAB_TOKEN`] reads; [`GITLAB_NO_SCOPE_TOKEN`] is a valid token without
//!   the `read_api` scope (403 `insufficient_scope`); any other token is 401; no token at all
//!   sees no project (every project here is private: 404 `404 Project Not Found`).
//! - An empty project (seeded with no branches and no commits) has `"default_branch": null`.
//! - Throttling for one project, set with `POST /gitlab/api/v4/_fake/throttle`
//!   `{"repo", "times", "retry_after"}`: the next `times` requests for it answer 429
//!   `Retry later` with `Retry-After` and `RateLimit-*` headers, as GitLab's rate limits do.

use std::sync::OnceLock;

use super::*;

/// A valid token that lacks the `read_api` scope: GitLab answers 403.
pub const GITLAB_NO_SCOPE_TOKEN: &str = "glpat-fake-no-scope-token";

/// Pending 429s per project: (times, retry-after seconds).
fn throttles() -> &'static Mutex<BTreeMap<String, (u32, u64)>> {
    static T: OnceLock<Mutex<BTreeMap<String, (u32, u64)>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

fn throttle(req: &Request) -> Response {
    let Some(v) = serde_json::from_slice::<Value>(&req.body).ok() else {
        return json_resp(400, json!({"error": "throttle needs a JSON body"}));
    };
    let Some(repo) = v["repo"].as_str() else {
        return json_resp(400, json!({"error": "throttle needs \"repo\""}));
    };
    throttles()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            repo.to_string(),
            (
                v["times"].as_u64().unwrap_or(1) as u32,
                v["retry_after"].as_u64().unwrap_or(1),
            ),
        );
    json_resp(200, json!({"ok": true}))
}

/// A pending 429 for `project` (counting it down).
fn take_throttle(project: &str) -> Option<Response> {
    let mut t = throttles().lock().unwrap_or_else(|e| e.into_inner());
    let (times, wait) = t.get_mut(project)?;
    let wait = *wait;
    *times -= 1;
    if *times == 0 {
        t.remove(project);
    }
    Some(Response {
        status: 429,
        headers: vec![
            ("content-type".into(), "text/plain".into()),
            ("retry-after".into(), wait.to_string()),
            ("ratelimit-limit".into(), "2000".into()),
            ("ratelimit-remaining".into(), "0".into()),
        ],
        body: b"Retry later\n".to_vec(),
    })
}

pub(super) fn gitlab(st: &State, req: &Request, rest: &str) -> Response {
    if rest == "_fake/throttle" && req.method == "POST" {
        return throttle(req);
    }
    let scoped = match req.headers.get("private-token") {
        Some(t) if t == GITLAB_TOKEN => true,
        Some(t) if t == GITLAB_NO_SCOPE_TOKEN => false,
        // Anonymous: every project here is private, and GitLab hides private projects from
        // anonymous requests with a 404 (not a 401).
        None => return json_resp(404, json!({"message": "404 Project Not Found"})),
        Some(_) => return json_resp(401, json!({"message": "401 Unauthorized"})),
    };
    if !scoped {
        return json_resp(
            403,
            json!({"error": "insufficient_scope", "error_description": "The request requires higher privileges than provided by the access token.", "scope": "api read_api"}),
        );
    }
    let Some(rest) = rest.strip_prefix("projects/") else {
        return json_resp(404, json!({"error": "404 Not Found"}));
    };
    // The project id or path is one URL-encoded segment (org%2Frepo): a raw slash is a 404.
    let (project, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(project) = pct_decode(project) else {
        return json_resp(400, json!({"error": "bad encoding"}));
    };
    if let Some(r) = take_throttle(&project) {
        return r;
    }
    let Some(repo) = st.repos.get(&project) else {
        return json_resp(404, json!({"message": "404 Project Not Found"}));
    };
    let empty = repo.branches.is_empty() && repo.commits.is_empty();
    if tail.is_empty() {
        return json_resp(
            200,
            json!({
                "path_with_namespace": project,
                "default_branch": if empty { Value::Null } else { json!(repo.default_branch) },
                "empty_repo": empty,
            }),
        );
    }
    let Some(file) = tail.strip_prefix("repository/files/") else {
        return json_resp(404, json!({"error": "404 Not Found"}));
    };
    if file.contains('/') {
        return json_resp(404, json!({"error": "404 Not Found"}));
    }
    let Some(path) = pct_decode(file) else {
        return json_resp(400, json!({"error": "bad encoding"}));
    };
    let Some(r) = req.query.get("ref") else {
        return json_resp(400, json!({"error": "ref is missing"}));
    };
    let Some(sha) = resolve(repo, r) else {
        return json_resp(404, json!({"message": "404 Commit Not Found"}));
    };
    match repo.commits.get(&sha).and_then(|c| c.get(&path)) {
        Some(c) => json_resp(
            200,
            json!({
                "file_name": path.rsplit('/').next().unwrap_or(&path), "file_path": path,
                "size": c.len(), "encoding": "base64", "content": b64(c),
                "content_sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(c.as_bytes())),
                "ref": r, "commit_id": sha, "last_commit_id": sha,
            }),
        ),
        None => json_resp(404, json!({"message": "404 File Not Found"})),
    }
}
