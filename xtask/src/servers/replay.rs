//! Replays real api.github.com traffic for the GitHub storage's replay tests
//! (`crates/flowstore-git/tests/github_replay.rs`): the exchanges PyGithub recorded against the
//! real API and ships in its source distribution (`tests/ReplayData/*.txt`, version
//! [`PYGITHUB`]), downloaded from PyPI with `pip download` into `target/replay-data/` at start
//! (once; nothing of it is committed). It also fetches GitHub's published OpenAPI description
//! (the copy npm's `@octokit/openapi` [`OCTOKIT_OPENAPI`] ships) for the test that holds the fake
//! GitHub to it (`FLOWSTORE_TEST_GITHUB_OPENAPI`).
//!
//! A recording file holds exchanges of 10 lines each (then a blank line): scheme, method, host,
//! port, path with query, request headers, request body, status, response headers (a Python
//! list of pairs), response body. The server (a thread of this process, on 127.0.0.1) answers
//! with a recorded status, headers and body, verbatim; it never makes up an answer.
//!
//! Tests define a *scenario* with `POST /_replay/scenario`
//! `{"name": "s1", "recordings": ["Stem", …], "routes": [{"path": "/repos/…", "recording":
//! "Stem", "index": 3}]}` and point the storage's `base_url` at `http://127.0.0.1:PORT/s1`. A
//! request `/s1/<path?query>` is answered by the route for that path (the `index`th exchange,
//! from 0, of that recording), else by the scenario's recordings' exchanges recorded for that
//! method and path (compared percent-decoded; the n-th identical request gets the n-th
//! recorded answer, the last one repeating), else 501 naming what was not recorded.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use super::Servers;

/// The PyGithub release whose recordings are replayed.
pub const PYGITHUB: &str = "2.5.0";

/// One recorded exchange.
#[derive(Clone, Debug)]
struct Exchange {
    method: String,
    /// Path and query as recorded.
    target: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A test's scenario: the recordings it answers from and its explicit routes.
#[derive(Default)]
struct Scenario {
    recordings: Vec<String>,
    /// Decoded request target → (recording, exchange index).
    routes: BTreeMap<String, (String, usize)>,
}

#[derive(Default)]
struct State {
    scenarios: BTreeMap<String, Scenario>,
    /// How many times each (scenario, method, target) was asked, to replay sequences.
    asked: BTreeMap<String, usize>,
}

/// The `@octokit/openapi` release (npm) whose copy of GitHub's published OpenAPI description
/// (github/rest-api-description, `api.github.com.json`) the fake GitHub is checked against.
pub const OCTOKIT_OPENAPI: &str = "23.0.2";

/// Downloads the recordings and the OpenAPI description (once), starts the replay server and
/// exports `FLOWSTORE_TEST_GITHUB_REPLAY` (its address) and `FLOWSTORE_TEST_GITHUB_OPENAPI`
/// (the description's path).
pub fn start(s: &mut Servers) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let openapi = openapi_description(root)?;
    s.set_env(
        "FLOWSTORE_TEST_GITHUB_OPENAPI",
        openapi.display().to_string(),
    );
    let dir = recordings_dir(root)?;
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let state = Arc::new(Mutex::new(State::default()));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (state, dir) = (state.clone(), dir.clone());
            std::thread::spawn(move || serve_one(stream, &state, &dir));
        }
    });
    s.set_env(
        "FLOWSTORE_TEST_GITHUB_REPLAY",
        format!("http://127.0.0.1:{port}"),
    );
    Ok(())
}

/// `target/replay-data/pygithub-<version>/tests/ReplayData`, downloaded and unpacked if missing.
fn recordings_dir(root: &Path) -> Result<PathBuf> {
    let data = root.join("target/replay-data");
    let dir = data.join(format!("pygithub-{PYGITHUB}/tests/ReplayData"));
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&data)?;
    let sdist = data.join(format!("pygithub-{PYGITHUB}.tar.gz"));
    if !sdist.is_file() {
        let status = Command::new("python3")
            .args(["-m", "pip", "download", "-q", "--disable-pip-version-check"])
            .args(["--no-deps", "--no-binary", ":all:", "-d"])
            .arg(&data)
            .arg(format!("PyGithub=={PYGITHUB}"))
            .status()
            .context("running python3 -m pip download")?;
        if !status.success() || !sdist.is_file() {
            bail!("downloading PyGithub {PYGITHUB}'s sdist from PyPI failed ({status})");
        }
    }
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&sdist)
        .arg("-C")
        .arg(&data)
        .arg(format!("pygithub-{PYGITHUB}/tests/ReplayData"))
        .status()
        .context("running tar")?;
    if !status.success() || !dir.is_dir() {
        bail!("unpacking {} failed ({status})", sdist.display());
    }
    Ok(dir)
}

/// `target/replay-data/octokit-openapi-<version>/package/generated/api.github.com.json`,
/// fetched with `npm pack` and unpacked if missing.
fn openapi_description(root: &Path) -> Result<PathBuf> {
    let data = root.join("target/replay-data");
    let dir = data.join(format!("octokit-openapi-{OCTOKIT_OPENAPI}"));
    let file = dir.join("package/generated/api.github.com.json");
    if file.is_file() {
        return Ok(file);
    }
    std::fs::create_dir_all(&dir)?;
    let tgz = data.join(format!("octokit-openapi-{OCTOKIT_OPENAPI}.tgz"));
    if !tgz.is_file() {
        let status = Command::new("npm")
            .args(["pack", "--silent", "--pack-destination"])
            .arg(&data)
            .arg(format!("@octokit/openapi@{OCTOKIT_OPENAPI}"))
            .stdout(std::process::Stdio::null())
            .status()
            .context("running npm pack")?;
        if !status.success() || !tgz.is_file() {
            bail!("downloading @octokit/openapi {OCTOKIT_OPENAPI} from npm failed ({status})");
        }
    }
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&dir)
        .arg("package/generated/api.github.com.json")
        .status()
        .context("running tar")?;
    if !status.success() || !file.is_file() {
        bail!("unpacking {} failed ({status})", tgz.display());
    }
    Ok(file)
}

/// Parses a recording file's exchanges.
fn parse_recording(text: &str) -> Vec<Exchange> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 9 < lines.len() {
        if !matches!(lines[i], "http" | "https") {
            i += 1;
            continue;
        }
        out.push(Exchange {
            method: lines[i + 1].to_string(),
            target: lines[i + 4].to_string(),
            status: lines[i + 7].trim().parse().unwrap_or(599),
            headers: python_pairs(lines[i + 8]),
            body: lines[i + 9].as_bytes().to_vec(),
        });
        i += 10;
    }
    out
}

/// The pairs of a Python list of 2-tuples of strings (`[('a', 'b'), ("c", 'd')]`).
fn python_pairs(s: &str) -> Vec<(String, String)> {
    let mut strings = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\'' && c != '"' {
            continue;
        }
        let mut v = String::new();
        while let Some(d) = chars.next() {
            match d {
                '\\' => {
                    if let Some(e) = chars.next() {
                        v.push(e);
                    }
                }
                d if d == c => break,
                d => v.push(d),
            }
        }
        strings.push(v);
    }
    strings
        .chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

/// A target percent-decoded, for comparing.
fn decoded(target: &str) -> String {
    percent_decode_str(target).decode_utf8_lossy().into_owned()
}

fn reply(stream: &mut TcpStream, status: u16, headers: &[(String, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        // Framing is this server's own; the recorded status line is not a header.
        if matches!(
            k.to_ascii_lowercase().as_str(),
            "status" | "content-length" | "connection" | "transfer-encoding" | "content-encoding"
        ) {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn reply_json(stream: &mut TcpStream, status: u16, v: Value) {
    let headers = [("content-type".to_string(), "application/json".to_string())];
    reply(stream, status, &headers, v.to_string().as_bytes());
}

fn serve_one(mut stream: TcpStream, state: &Mutex<State>, dir: &Path) {
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    if method == "POST" && target == "/_replay/scenario" {
        let Ok(v) = serde_json::from_slice::<Value>(&body) else {
            return reply_json(&mut stream, 400, json!({"error": "scenario needs JSON"}));
        };
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let strings = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let scenario = Scenario {
            recordings: v["recordings"]
                .as_array()
                .map(|a| a.iter().map(strings).collect())
                .unwrap_or_default(),
            routes: v["routes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            (
                                decoded(&strings(&r["path"])),
                                (
                                    strings(&r["recording"]),
                                    r["index"].as_u64().unwrap_or(0) as usize,
                                ),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        st.asked.retain(|k, _| !k.starts_with(&format!("{name} ")));
        st.scenarios.insert(name, scenario);
        return reply_json(&mut stream, 200, json!({"ok": true}));
    }
    let (name, rest) = match target.trim_start_matches('/').split_once('/') {
        Some((n, r)) => (n.to_string(), format!("/{r}")),
        None => return reply_json(&mut stream, 404, json!({"message": "no scenario named"})),
    };
    let Some(scenario) = st.scenarios.get(&name) else {
        return reply_json(
            &mut stream,
            404,
            json!({"message": format!("no scenario {name}")}),
        );
    };
    let want = decoded(&rest);
    let load = |stem: &str| -> Vec<Exchange> {
        let file = dir.join(format!("{stem}.txt"));
        std::fs::read_to_string(&file)
            .map(|t| parse_recording(&t))
            .unwrap_or_default()
    };
    let found = if let Some((stem, index)) = scenario.routes.get(&want) {
        load(stem).get(*index).cloned()
    } else {
        let matching: Vec<Exchange> = scenario
            .recordings
            .iter()
            .flat_map(|stem| load(stem))
            .filter(|e| e.method == method && decoded(&e.target) == want)
            .collect();
        let key = format!("{name} {method} {want}");
        let n = st.asked.entry(key).or_default();
        let pick = matching.get(*n).or(matching.last()).cloned();
        *n += 1;
        pick
    };
    drop(st);
    match found {
        Some(e) => reply(&mut stream, e.status, &e.headers, &e.body),
        None => reply_json(
            &mut stream,
            501,
            json!({"message": format!("nothing recorded for {method} {rest} in scenario {name}")}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordings_parse_into_exchanges() {
        let text = "https\nGET\napi.github.com\nNone\n/repos/o/r?ref=a%2Fb\n{'User-Agent': 'x'}\nNone\n404\n[('status', '404 Not Found'), ('etag', '\"abc\"'), (\"x\", 'it\\'s')]\n{\"message\":\"Not Found\"}\n\nhttps\nGET\napi.github.com\nNone\n/user\n{}\nNone\n200\n[]\n{}\n";
        let ex = parse_recording(text);
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].method, "GET");
        assert_eq!(ex[0].status, 404);
        assert_eq!(decoded(&ex[0].target), "/repos/o/r?ref=a/b");
        assert_eq!(
            ex[0].headers,
            [
                ("status".to_string(), "404 Not Found".to_string()),
                ("etag".to_string(), "\"abc\"".to_string()),
                ("x".to_string(), "it's".to_string()),
            ]
        );
        assert_eq!(ex[0].body, b"{\"message\":\"Not Found\"}");
        assert_eq!(ex[1].target, "/user");
    }
}
