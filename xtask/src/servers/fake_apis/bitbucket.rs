//! The fake Bitbucket Server and Cloud REST APIs (see the parent module for the paths served).
//!
//! Written from Atlassian's public REST API documentation:
//! - Server / Data Center: `Authorization: Bearer <HTTP access token>` or HTTP Basic with a
//!   username and password; `…/default-branch`, `…/raw/{path}?at=` answering the raw bytes;
//!   errors as `{"errors": [{"message", "exceptionName"}]}` (a missing project, repository,
//!   commit or path each say which).
//! - Cloud: `Authorization: Bearer <access token>` (repository/project/workspace access tokens)
//!   or HTTP Basic with the Atlassian account email and an API token; app passwords (username +
//!   app password) are refused with 401, as since June 9, 2026. `GET /2.0/repositories/{ws}/{r}`,
//!   `…/refs/branches` and `…/refs/tags` (paginated, 2 per page, `next` links),
//!   `…/refs/branches/{name}` and `…/refs/tags/{name}` (a name may hold `/`), `…/commit/{sha}`,
//!   `…/src/{sha}/{path}`: a file's raw bytes, a directory's paginated JSON listing
//!   (`values` of `commit_file` / `commit_directory`, `pagelen`), `?format=meta` the path's
//!   metadata; `GET /2.0/workspaces/{ws}`. Errors as `{"type": "error", "error": {"message"}}`.
//!
//! Faults for tests, per repository (so tests running at the same time do not see each other's):
//! `POST /bbc/2.0/_fake/faults` or `POST /bbs/rest/api/1.0/_fake/faults` with
//! `{"repo": "ws/r", "status": 500, "count": 2, "path": "refs/branches"}` answers the next
//! `count` requests for that repository (whose path ends with `path`, if given) with `status`
//! (429s carry `Retry-After: 1`).

use super::*;

/// One injected fault: (status, remaining count, path suffix).
type Fault = (u16, usize, String);

/// Pending injected faults, by repository.
static FAULTS: Mutex<BTreeMap<String, Vec<Fault>>> = Mutex::new(BTreeMap::new());

/// Records a fault from a `_fake/faults` request.
fn add_fault(req: &Request) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&req.body) else {
        return json_resp(400, json!({"error": "faults needs a JSON body"}));
    };
    let (Some(repo), Some(status)) = (v["repo"].as_str(), v["status"].as_u64()) else {
        return json_resp(
            400,
            json!({"error": "faults needs {\"repo\": \"ws/r\", \"status\": N}"}),
        );
    };
    let count = v["count"].as_u64().unwrap_or(1) as usize;
    let path = v["path"].as_str().unwrap_or_default().to_string();
    FAULTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(repo.to_string())
        .or_default()
        .push((status as u16, count, path));
    json_resp(200, json!({"ok": true}))
}

/// The injected fault for a request on `repo` (at `path`), if any is pending; counts it down.
fn take_fault(repo: &str, path: &str) -> Option<u16> {
    let mut faults = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    let list = faults.get_mut(repo)?;
    let i = list
        .iter()
        .position(|(_, n, p)| *n > 0 && path.ends_with(p.as_str()))?;
    list[i].1 -= 1;
    let status = list[i].0;
    list.retain(|(_, n, _)| *n > 0);
    Some(status)
}

fn fault_response(status: u16, cloud: bool) -> Response {
    let message = match status {
        429 => "Rate limit for this resource has been exceeded",
        400 => "Bad request",
        _ => "Something went wrong",
    };
    let mut r = if cloud {
        json_resp(
            status,
            json!({"type": "error", "error": {"message": message}}),
        )
    } else {
        json_resp(status, json!({"errors": [{"message": message}]}))
    };
    if status == 429 {
        r.headers.push(("retry-after".into(), "1".into()));
    }
    r
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", b64(&format!("{user}:{password}")))
}

fn server_error(status: u16, message: String, exception: &str) -> Response {
    json_resp(
        status,
        json!({"errors": [{"context": null, "message": message, "exceptionName": exception}]}),
    )
}

pub(super) fn bitbucket_server(st: &State, req: &Request, rest: &str) -> Response {
    if rest == "_fake/faults" && req.method == "POST" {
        return add_fault(req);
    }
    let auth = req.headers.get("authorization").map(String::as_str);
    if auth != Some(&format!("Bearer {BBS_TOKEN}")) && auth != Some(&basic(BBS_USER, BBS_PASSWORD))
    {
        return json_resp(
            401,
            json!({"errors": [{"message": "Authentication failed. Please check your credentials and try again."}]}),
        );
    }
    let seg: Vec<&str> = rest.splitn(6, '/').collect();
    if seg.len() < 5 || seg[0] != "projects" || seg[2] != "repos" {
        return json_resp(404, json!({"errors": [{"message": "Not found."}]}));
    }
    let (project, slug) = (seg[1], seg[3]);
    let key = format!("{project}/{slug}");
    if let Some(status) = take_fault(&key, rest) {
        return fault_response(status, false);
    }
    let Some(repo) = st.repos.get(&key) else {
        let project_exists = st
            .repos
            .keys()
            .any(|k| k.split_once('/').is_some_and(|(p, _)| p == project));
        return if project_exists {
            server_error(
                404,
                format!("Repository {key} does not exist."),
                "com.atlassian.bitbucket.repository.NoSuchRepositoryException",
            )
        } else {
            server_error(
                404,
                format!("Project {project} does not exist."),
                "com.atlassian.bitbucket.project.NoSuchProjectException",
            )
        };
    };
    match (seg[4], seg.get(5)) {
        ("default-branch", None) => json_resp(
            200,
            json!({"id": format!("refs/heads/{}", repo.default_branch), "displayId": repo.default_branch}),
        ),
        ("raw", Some(path)) => {
            let Some(path) = pct_decode(path) else {
                return json_resp(400, json!({"errors": [{"message": "Bad path."}]}));
            };
            let r = req
                .query
                .get("at")
                .cloned()
                .unwrap_or_else(|| repo.default_branch.clone());
            let Some(sha) = resolve(repo, &r) else {
                return server_error(
                    404,
                    format!("Commit '{r}' does not exist in repository '{slug}'."),
                    "com.atlassian.bitbucket.commit.NoSuchCommitException",
                );
            };
            match repo.commits.get(&sha).and_then(|c| c.get(&path)) {
                Some(c) => Response {
                    status: 200,
                    headers: vec![("content-type".into(), "text/plain".into())],
                    body: c.clone().into_bytes(),
                },
                None => server_error(
                    404,
                    format!("The path \"{path}\" does not exist at revision \"{r}\""),
                    "com.atlassian.bitbucket.content.NoSuchPathException",
                ),
            }
        }
        _ => json_resp(404, json!({"errors": [{"message": "Not found."}]})),
    }
}

fn cloud_error(status: u16, message: String) -> Response {
    json_resp(
        status,
        json!({"type": "error", "error": {"message": message}}),
    )
}

/// The entries directly under directory `dir` (`""` for the root) of a commit: (path, is a
/// directory).
fn listing(files: &BTreeMap<String, String>, dir: &str) -> Vec<(String, bool)> {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{}/", dir.trim_end_matches('/'))
    };
    let mut out: BTreeMap<String, bool> = BTreeMap::new();
    for path in files.keys() {
        let Some(rest) = path.strip_prefix(&prefix) else {
            continue;
        };
        match rest.split_once('/') {
            Some((d, _)) => out.insert(format!("{prefix}{d}"), true),
            None => out.insert(path.clone(), false),
        };
    }
    out.into_iter().collect()
}

pub(super) fn bitbucket_cloud(st: &mut State, req: &Request, rest: &str, port: u16) -> Response {
    if rest == "_fake/faults" && req.method == "POST" {
        return add_fault(req);
    }
    let auth = req.headers.get("authorization").map(String::as_str);
    if auth == Some(&basic(BBC_USER, BBC_PASSWORD)) {
        return cloud_error(
            401,
            "Bitbucket Cloud no longer accepts app passwords: authenticate with an API token (your Atlassian account email and the token) or an access token".into(),
        );
    }
    if auth != Some(&basic(BBC_EMAIL, BBC_API_TOKEN))
        && auth != Some(&format!("Bearer {BBC_ACCESS_TOKEN}"))
    {
        return cloud_error(401, "Unauthorized".into());
    }
    if st.throttle > 0 {
        st.throttle -= 1;
        return fault_response(429, true);
    }
    let seg: Vec<&str> = rest.splitn(6, '/').collect();
    if seg.first() == Some(&"workspaces") && seg.len() == 2 {
        let ws = seg[1];
        let exists = st
            .repos
            .keys()
            .any(|k| k.split_once('/').is_some_and(|(w, _)| w == ws));
        return if exists {
            json_resp(200, json!({"type": "workspace", "slug": ws}))
        } else {
            cloud_error(404, format!("No workspace with identifier '{ws}'."))
        };
    }
    if seg.len() < 3 || seg[0] != "repositories" {
        return cloud_error(404, "Resource not found".into());
    }
    let key = format!("{}/{}", seg[1], seg[2]);
    if let Some(status) = take_fault(&key, rest) {
        return fault_response(status, true);
    }
    let Some(repo) = st.repos.get(&key) else {
        return cloud_error(404, format!("Repository {key} not found"));
    };
    match (
        seg.get(3).copied(),
        seg.get(4).copied(),
        seg.get(5).copied(),
    ) {
        (None, _, _) => json_resp(
            200,
            json!({"type": "repository", "full_name": key, "mainbranch": {"type": "branch", "name": repo.default_branch}}),
        ),
        (Some("refs"), Some(kind @ ("branches" | "tags")), None) => {
            let all: Vec<(&String, &String)> = if kind == "branches" {
                repo.branches.iter().collect()
            } else {
                repo.tags.iter().collect()
            };
            let page: usize = req
                .query
                .get("page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1);
            let per = 2;
            let values: Vec<Value> = all
                .iter()
                .skip((page - 1) * per)
                .take(per)
                .map(|(n, sha)| json!({"name": n, "target": {"hash": sha}}))
                .collect();
            let mut body =
                json!({"pagelen": per, "page": page, "size": all.len(), "values": values});
            if page * per < all.len() {
                body["next"] = json!(format!(
                    "http://127.0.0.1:{port}/bbc/2.0/repositories/{key}/refs/{kind}?page={}",
                    page + 1
                ));
            }
            json_resp(200, body)
        }
        (Some("refs"), Some(kind @ ("branches" | "tags")), Some(name)) => {
            let Some(name) = pct_decode(name) else {
                return cloud_error(400, "Bad ref name".into());
            };
            let (refs, ty, what) = if kind == "branches" {
                (&repo.branches, "branch", "Branch")
            } else {
                (&repo.tags, "tag", "Tag")
            };
            match refs.get(&name) {
                Some(sha) => json_resp(
                    200,
                    json!({"type": ty, "name": name, "target": {"type": "commit", "hash": sha}}),
                ),
                None => cloud_error(404, format!("{what} \"{name}\" not found")),
            }
        }
        (Some("commit"), Some(sha), None) => {
            if repo.commits.contains_key(sha) {
                json_resp(200, json!({"type": "commit", "hash": sha}))
            } else {
                cloud_error(404, format!("Commit not found: {sha}"))
            }
        }
        (Some("src"), Some(sha), path) => {
            let Some(path) = pct_decode(path.unwrap_or_default()) else {
                return cloud_error(400, "Bad path".into());
            };
            let Some(files) = repo.commits.get(sha) else {
                return cloud_error(404, format!("Commit not found: {sha}"));
            };
            let path = path.trim_end_matches('/');
            let meta = req.query.get("format").map(String::as_str) == Some("meta");
            if let Some(c) = files.get(path) {
                return if meta {
                    json_resp(
                        200,
                        json!({"type": "commit_file", "path": path, "size": c.len(), "commit": {"type": "commit", "hash": sha}}),
                    )
                } else {
                    // The content type follows the file's name; Python files are text.
                    let ctype = if path.ends_with(".json") {
                        "application/json"
                    } else {
                        "text/plain"
                    };
                    Response {
                        status: 200,
                        headers: vec![("content-type".into(), ctype.into())],
                        body: c.clone().into_bytes(),
                    }
                };
            }
            let entries = listing(files, path);
            if entries.is_empty() && !path.is_empty() {
                return cloud_error(404, format!("No such file or directory: {path}"));
            }
            if meta {
                return json_resp(
                    200,
                    json!({"type": "commit_directory", "path": path, "commit": {"type": "commit", "hash": sha}}),
                );
            }
            let values: Vec<Value> = entries
                .iter()
                .map(|(p, dir)| {
                    if *dir {
                        json!({"type": "commit_directory", "path": p, "commit": {"type": "commit", "hash": sha}})
                    } else {
                        json!({"type": "commit_file", "path": p, "size": files[p].len(), "commit": {"type": "commit", "hash": sha}})
                    }
                })
                .collect();
            json_resp(200, json!({"pagelen": 10, "page": 1, "values": values}))
        }
        _ => cloud_error(404, "Resource not found".into()),
    }
}
