//! Bitbucket Cloud storage against answers captured from the real `api.bitbucket.org`: the JSON
//! files pybitbucket 0.12.0 ships in its source distribution's `tests/` (`Branch.json`,
//! `Tag.json`, `Commit.json`: the branch `bug/35-url-name-collision` and the tag `v0.1.1` of
//! `atlassian/python-bitbucket`, and a commit of `teamsinspace/teamsinspace.bitbucket.org`).
//! `cargo xtask test` downloads them (`pip download`, see `xtask/src/servers/real_world.rs`) and
//! exports their directory as `FLOWSTORE_TEST_PYBITBUCKET_TESTS`; nothing of them is committed.
//!
//! A small server in this file replays each answer at the path of its own `links.self.href`,
//! so flowstore must ask for exactly the URL Bitbucket itself names the resource by, and must
//! read the commit from the real answer's shape. The recordings hold no file contents: the
//! `src/{commit}/{path}` answers are made here (plain text, as Bitbucket serves a file).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flowstore_core::{Error, FlowInput, Storage};
use flowstore_git::Bitbucket;
use flowstore_secrets::MapSource;
use serde_json::Value;

/// What the replay server answers: path → (status, content type, body); and what it was asked.
struct Replay {
    base: String,
    asked: Arc<Mutex<Vec<String>>>,
}

fn recorded(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()));
    serde_json::from_str(&text).unwrap()
}

/// The path of a recorded answer's `links.self.href` (`/2.0/repositories/…`).
fn self_path(v: &Value) -> String {
    let href = v["links"]["self"]["href"].as_str().unwrap();
    href.strip_prefix("https://api.bitbucket.org")
        .unwrap()
        .to_string()
}

fn serve(answers: BTreeMap<String, (u16, &'static str, String)>) -> Replay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
            }
            let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            log.lock().unwrap().push(target.clone());
            let (status, ctype, body) = answers.get(&target).cloned().unwrap_or((
                404,
                "application/json",
                r#"{"type": "error", "error": {"message": "Resource not found"}}"#.into(),
            ));
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });
    Replay { base, asked }
}

fn storage(replay: &Replay, ws: &str, repo: &str, r: &str) -> Bitbucket {
    let secrets = MapSource::new()
        .with("BITBUCKET_CLOUD_USERNAME", "someone@example.com")
        .with("BITBUCKET_CLOUD_APP_PASSWORD", "recorded-replay-token");
    Bitbucket::cloud(ws, repo, "flows/etl.py")
        .host(&replay.base)
        .git_ref(r)
        .secrets(Arc::new(secrets))
        .build()
        .unwrap()
}

#[tokio::test]
async fn branches_and_tags_resolve_from_real_bitbucket_answers() {
    let dir = match std::env::var("FLOWSTORE_TEST_PYBITBUCKET_TESTS") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            return flowstore_core::testkit::skip(
                "branches_and_tags_resolve_from_real_bitbucket_answers",
                &flowstore_core::testkit::Skip(
                    "FLOWSTORE_TEST_PYBITBUCKET_TESTS is not set: pybitbucket's recorded answers were not downloaded (cargo xtask test does it)".into(),
                ),
            )
        }
    };
    let branch = recorded(&dir, "Branch.json");
    let tag = recorded(&dir, "Tag.json");
    let commit = recorded(&dir, "Commit.json");
    let branch_sha = branch["target"]["hash"].as_str().unwrap().to_string();
    let tag_sha = tag["target"]["hash"].as_str().unwrap().to_string();
    let commit_sha = commit["hash"].as_str().unwrap().to_string();
    let repo_path = "/2.0/repositories/atlassian/python-bitbucket";
    let mut answers = BTreeMap::new();
    let json = |v: &Value| (200, "application/json", v.to_string());
    answers.insert(self_path(&branch), json(&branch));
    answers.insert(self_path(&tag), json(&tag));
    answers.insert(self_path(&commit), json(&commit));
    for (sha, version) in [(&branch_sha, "branch"), (&tag_sha, "tag")] {
        answers.insert(
            format!("{repo_path}/src/{sha}/flows/etl.py"),
            (
                200,
                "text/x-python",
                format!("with Flow(\"ETL\") as flow:  # {version}\n    pass\n"),
            ),
        );
    }
    let replay = serve(answers);
    // A branch whose name holds a slash: asked for at the path Bitbucket names it by.
    let name = branch["name"].as_str().unwrap();
    let mut s = storage(&replay, "atlassian", "python-bitbucket", name);
    s.add_flow(FlowInput::script("ETL")).await.unwrap();
    let f = s.get_flow("ETL").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.revision.as_deref(), Some(branch_sha.as_str()));
    assert!(String::from_utf8_lossy(f.bytes()).contains("# branch"));
    assert!(
        replay.asked.lock().unwrap().contains(&self_path(&branch)),
        "{:?}",
        replay.asked.lock().unwrap()
    );
    // A tag: the branch lookup answers 404 (not recorded), then the recorded tag.
    let name = tag["name"].as_str().unwrap();
    let mut s = storage(&replay, "atlassian", "python-bitbucket", name);
    s.add_flow(FlowInput::script("ETL")).await.unwrap();
    let f = s.get_flow("ETL").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.revision.as_deref(), Some(tag_sha.as_str()));
    assert!(String::from_utf8_lossy(f.bytes()).contains("# tag"));
    // A commit that exists (the recorded commit answer) but has no such file: a missing file.
    let full = commit["repository"]["full_name"].as_str().unwrap();
    let (ws, repo) = full.split_once('/').unwrap();
    let mut s = storage(&replay, ws, repo, &commit_sha);
    s.add_flow(FlowInput::script("ETL")).await.unwrap();
    let err = s.get_flow("ETL").await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound { what: "file", .. }),
        "{err:?}"
    );
}
