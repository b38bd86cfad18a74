"""Test support for tests/prefect1_interop.rs (not the peer): commits one file to a repository of
the fake GitHub API that `cargo xtask test` serves (`POST /_fake/seed`), on branch `main` at
commit SHA. Prints `{"seeded": REPO}`.

Usage: seed_fake_github.py FAKE_APIS_BASE REPO SHA PATH FILE
"""
import json
import sys
import urllib.request

base, repo, sha, path, file = sys.argv[1:6]
with open(file, encoding="utf-8") as f:
    content = f.read()
seed = {
    "repo": repo,
    "default_branch": "main",
    "branches": {"main": sha},
    "tags": {},
    "commits": {sha: {path: content}},
}
request = urllib.request.Request(
    base.rstrip("/") + "/_fake/seed",
    data=json.dumps(seed).encode(),
    headers={"content-type": "application/json"},
    method="POST",
)
with urllib.request.urlopen(request) as reply:
    assert 200 <= reply.status < 300, reply.status
print(json.dumps({"seeded": repo}))
