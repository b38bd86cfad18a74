//! The fake CodeCommit JSON API (see the parent module for the paths served), written from the
//! `GetFile` API reference: errors are HTTP 400 with `{"__type": "<Exception>", "message"}`
//! (`RepositoryDoesNotExistException`, `CommitDoesNotExistException`,
//! `FileDoesNotExistException`, `FileTooLargeException` above GetFile's 6 MiB,
//! `InvalidPathException`, `PathRequiredException`), a refused signature 403
//! `InvalidSignatureException`.
//!
//! Faults for tests, per repository: `POST /codecommit/` with
//! `X-Amz-Target: FlowstoreFake.InjectFault` (unsigned; not an AWS operation) and
//! `{"repositoryName": r, "type": "ThrottlingException", "status": 400, "count": 2}` answers the
//! next `count` `GetFile` calls on `r` with that error (e.g. the encryption-key exceptions, or
//! `ServiceUnavailableException` with 503).

use super::*;

/// GetFile's limit on the file size (6 MiB), per its API reference.
const GET_FILE_LIMIT: usize = 6 * 1024 * 1024;

/// One injected fault: (`__type`, status, remaining count).
type Fault = (String, u16, usize);

/// Pending injected faults, by repository.
static FAULTS: Mutex<BTreeMap<String, Vec<Fault>>> = Mutex::new(BTreeMap::new());

fn add_fault(req: &Request) -> Response {
    let v: Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let (Some(repo), Some(kind)) = (v["repositoryName"].as_str(), v["type"].as_str()) else {
        return json_resp(
            400,
            json!({"__type": "ValidationException", "message": "InjectFault needs repositoryName and type"}),
        );
    };
    let status = v["status"].as_u64().unwrap_or(400) as u16;
    let count = v["count"].as_u64().unwrap_or(1) as usize;
    FAULTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(repo.to_string())
        .or_default()
        .push((kind.to_string(), status, count));
    json_resp(200, json!({"ok": true}))
}

fn take_fault(repo: &str) -> Option<(String, u16)> {
    let mut faults = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    let list = faults.get_mut(repo)?;
    let first = list.first_mut()?;
    first.2 -= 1;
    let out = (first.0.clone(), first.1);
    list.retain(|f| f.2 > 0);
    Some(out)
}

pub(super) fn codecommit(st: &State, req: &Request, port: u16) -> Response {
    let err = |status: u16, kind: &str, msg: &str| {
        json_resp(status, json!({"__type": kind, "message": msg}))
    };
    if req.headers.get("x-amz-target").map(String::as_str) == Some("FlowstoreFake.InjectFault") {
        return add_fault(req);
    }
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
    if let Some((kind, status)) = take_fault(name) {
        return err(status, kind.as_str(), &format!("{kind} (injected)"));
    }
    if path.is_empty() {
        return err(
            400,
            "PathRequiredException",
            "The folderPath for a location cannot be null.",
        );
    }
    if path.ends_with('/') || path.contains("//") || path.split('/').any(|s| s == "..") {
        return err(
            400,
            "InvalidPathException",
            &format!("The specified path {path} is not valid."),
        );
    }
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
    let path = path.trim_start_matches('/');
    match repo.commits.get(&sha).and_then(|c| c.get(path)) {
        Some(c) if c.len() > GET_FILE_LIMIT => err(
            400,
            "FileTooLargeException",
            &format!("The file {path} is too large: GetFile returns files of up to 6 MB."),
        ),
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
