//! The fake Bitbucket Server and Cloud REST APIs (see the parent module for the paths served).

use super::*;

pub(super) fn bitbucket_server(st: &State, req: &Request, rest: &str) -> Response {
    if req.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {BBS_TOKEN}"))
    {
        return json_resp(
            401,
            json!({"errors": [{"message": "Authentication failed. Please check your credentials and try again."}]}),
        );
    }
    let seg: Vec<&str> = rest.splitn(6, '/').collect();
    let not_found = || {
        json_resp(
            404,
            json!({"errors": [{"message": "Repository does not exist."}]}),
        )
    };
    if seg.len() < 5 || seg[0] != "projects" || seg[2] != "repos" {
        return not_found();
    }
    let Some(repo) = st.repos.get(&format!("{}/{}", seg[1], seg[3])) else {
        return not_found();
    };
    match (seg[4], seg.get(5)) {
        ("default-branch", None) => json_resp(
            200,
            json!({"id": format!("refs/heads/{}", repo.default_branch), "displayId": repo.default_branch}),
        ),
        ("raw", Some(path)) => {
            let Some(path) = pct_decode(path) else {
                return not_found();
            };
            let r = req
                .query
                .get("at")
                .cloned()
                .unwrap_or_else(|| repo.default_branch.clone());
            match resolve(repo, &r)
                .and_then(|sha| repo.commits.get(&sha))
                .and_then(|c| c.get(&path))
            {
                Some(c) => Response {
                    status: 200,
                    headers: vec![("content-type".into(), "text/plain".into())],
                    body: c.clone().into_bytes(),
                },
                None => json_resp(
                    404,
                    json!({"errors": [{"message": format!("The path \"{path}\" does not exist at revision \"{r}\"")}]}),
                ),
            }
        }
        _ => not_found(),
    }
}

pub(super) fn bitbucket_cloud(st: &mut State, req: &Request, rest: &str, port: u16) -> Response {
    let expected = format!("Basic {}", b64(&format!("{BBC_USER}:{BBC_PASSWORD}")));
    if req.headers.get("authorization") != Some(&expected) {
        return json_resp(
            401,
            json!({"type": "error", "error": {"message": "Access denied"}}),
        );
    }
    if st.throttle > 0 {
        st.throttle -= 1;
        let mut r = json_resp(
            429,
            json!({"type": "error", "error": {"message": "Rate limit for this resource has been exceeded"}}),
        );
        r.headers.push(("retry-after".into(), "1".into()));
        return r;
    }
    let seg: Vec<&str> = rest.splitn(6, '/').collect();
    let not_found = || {
        json_resp(
            404,
            json!({"type": "error", "error": {"message": "Repository not found"}}),
        )
    };
    if seg.len() < 3 || seg[0] != "repositories" {
        return not_found();
    }
    let key = format!("{}/{}", seg[1], seg[2]);
    let Some(repo) = st.repos.get(&key) else {
        return not_found();
    };
    match (
        seg.get(3).copied(),
        seg.get(4).copied(),
        seg.get(5).copied(),
    ) {
        (None, _, _) => json_resp(
            200,
            json!({"full_name": key, "mainbranch": {"type": "branch", "name": repo.default_branch}}),
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
        (Some("src"), Some(sha), Some(path)) => {
            let Some(path) = pct_decode(path) else {
                return not_found();
            };
            match repo.commits.get(sha).and_then(|c| c.get(&path)) {
                Some(c) => Response {
                    status: 200,
                    headers: vec![("content-type".into(), "text/plain".into())],
                    body: c.clone().into_bytes(),
                },
                None => json_resp(
                    404,
                    json!({"type": "error", "error": {"message": "No such file or directory"}}),
                ),
            }
        }
        _ => not_found(),
    }
}
