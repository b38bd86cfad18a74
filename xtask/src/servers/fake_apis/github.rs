//! The fake GitHub REST API (see the parent module for the paths served).

use super::*;

pub(super) fn github(st: &mut State, req: &Request, rest: &str) -> Response {
    let auth = req
        .headers
        .get("authorization")
        .map(String::as_str)
        .unwrap_or("");
    let authed =
        auth == format!("Bearer {GITHUB_TOKEN}") || auth == format!("token {GITHUB_TOKEN}");
    if !auth.is_empty() && !authed {
        return json_resp(
            401,
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
        );
    }
    let limited_repo = rest
        .strip_prefix("repos/")
        .and_then(|r| {
            let mut seg = r.splitn(3, '/');
            Some(format!("{}/{}", seg.next()?, seg.next()?))
        })
        .is_some_and(|key| st.rate_limited.contains(&key));
    if limited_repo {
        let mut r = json_resp(
            403,
            json!({"message": "API rate limit exceeded for 127.0.0.1."}),
        );
        r.headers.push(("x-ratelimit-remaining".into(), "0".into()));
        r.headers
            .push(("x-ratelimit-reset".into(), "4102444800".into()));
        return r;
    }
    let not_found = || {
        json_resp(
            404,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
        )
    };
    if req.method != "GET"
        || !req
            .headers
            .get("accept")
            .is_some_and(|a| a.contains("application/vnd.github"))
    {
        return json_resp(
            415,
            json!({"message": "Unsupported Media Type: send Accept: application/vnd.github+json"}),
        );
    }
    let Some(rest) = rest.strip_prefix("repos/") else {
        return not_found();
    };
    let mut seg = rest.splitn(4, '/');
    let (Some(owner), Some(name)) = (seg.next(), seg.next()) else {
        return not_found();
    };
    let key = format!("{owner}/{name}");
    // Private repositories: visible only with the token, as GitHub answers 404 (not 401) otherwise.
    let Some(repo) = st.repos.get(&key).filter(|_| authed) else {
        return not_found();
    };
    match (seg.next(), seg.next()) {
        (None, _) => json_resp(
            200,
            json!({"full_name": key, "default_branch": repo.default_branch, "private": true}),
        ),
        (Some("commits"), Some(r)) => {
            let Some(r) = pct_decode(r) else {
                return not_found();
            };
            match resolve(repo, &r) {
                Some(sha) => json_resp(200, json!({"sha": sha})),
                None => json_resp(
                    422,
                    json!({"message": format!("No commit found for SHA: {r}")}),
                ),
            }
        }
        (Some("contents"), Some(path)) => {
            let Some(path) = pct_decode(path) else {
                return not_found();
            };
            let sha = req
                .query
                .get("ref")
                .cloned()
                .unwrap_or_else(|| repo.branches[&repo.default_branch].clone());
            match repo.commits.get(&sha).and_then(|c| c.get(&path)) {
                Some(content) => json_resp(
                    200,
                    json!({"type": "file", "encoding": "base64", "path": path, "content": b64(content), "sha": "blob"}),
                ),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}
