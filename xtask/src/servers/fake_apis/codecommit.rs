//! The fake CodeCommit JSON API (see the parent module for the paths served).

use super::*;

pub(super) fn codecommit(st: &State, req: &Request, port: u16) -> Response {
    let err = |status: u16, kind: &str, msg: &str| {
        json_resp(status, json!({"__type": kind, "message": msg}))
    };
    if req.method != "POST"
        || req.headers.get("x-amz-target").map(String::as_str)
            != Some("CodeCommit_20150413.GetFile")
    {
        return err(400, "UnknownOperationException", "unknown operation");
    }
    if let Err(e) = crate::servers::sigv4::verify(
        &req.method,
        &req.path,
        &req.raw_query,
        &req.headers,
        &req.body,
        AWS_KEY,
        AWS_SECRET,
        "codecommit",
        &format!("127.0.0.1:{port}"),
    ) {
        return err(403, "InvalidSignatureException", &e);
    }
    let Ok(v) = serde_json::from_slice::<Value>(&req.body) else {
        return err(400, "SerializationException", "bad JSON");
    };
    let (Some(name), Some(path)) = (v["repositoryName"].as_str(), v["filePath"].as_str()) else {
        return err(
            400,
            "ValidationException",
            "repositoryName and filePath are required",
        );
    };
    let Some(repo) = st.repos.get(name) else {
        return err(
            400,
            "RepositoryDoesNotExistException",
            &format!("{name} does not exist"),
        );
    };
    let spec = v["commitSpecifier"]
        .as_str()
        .unwrap_or(&repo.default_branch)
        .to_string();
    let Some(sha) = resolve(repo, &spec) else {
        return err(
            400,
            "CommitDoesNotExistException",
            &format!("{spec} does not exist"),
        );
    };
    match repo.commits.get(&sha).and_then(|c| c.get(path)) {
        Some(c) => json_resp(
            200,
            json!({"blobId": "b", "commitId": sha, "fileContent": b64(c), "fileMode": "NORMAL", "filePath": path, "fileSize": c.len()}),
        ),
        None => err(
            400,
            "FileDoesNotExistException",
            &format!("{path} does not exist at {sha}"),
        ),
    }
}
