//! The fake GitLab REST API (see the parent module for the paths served).

use super::*;

pub(super) fn gitlab(st: &State, req: &Request, rest: &str) -> Response {
    match req.headers.get("private-token") {
        Some(t) if t == GITLAB_TOKEN => {}
        _ => return json_resp(401, json!({"message": "401 Unauthorized"})),
    }
    let Some(rest) = rest.strip_prefix("projects/") else {
        return json_resp(404, json!({"error": "404 Not Found"}));
    };
    // The project id or path is one URL-encoded segment (org%2Frepo): a raw slash is a 404.
    let (project, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(project) = pct_decode(project) else {
        return json_resp(400, json!({"error": "bad encoding"}));
    };
    let Some(repo) = st.repos.get(&project) else {
        return json_resp(404, json!({"message": "404 Project Not Found"}));
    };
    if tail.is_empty() {
        return json_resp(
            200,
            json!({"path_with_namespace": project, "default_branch": repo.default_branch}),
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
            json!({"file_path": path, "encoding": "base64", "content": b64(c), "ref": r, "commit_id": sha, "last_commit_id": sha}),
        ),
        None => json_resp(404, json!({"message": "404 File Not Found"})),
    }
}
