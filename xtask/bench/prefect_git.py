"""Prefect 1 baseline for `cargo xtask bench` (Git section): Prefect 1.4.1's `Git` storage fetching
a flow from the same `git daemon` repository. Prefect clones into a temporary directory at every
`get_flow` (dulwich, depth 1) and removes it; the clone URL comes from a secret
(`git_clone_url_secret_name`) because Prefect builds only https/ssh URLs itself. Prints the median
milliseconds of REPS fetches as JSON.
"""
import json
import os
import sys
import time

url, flow_path, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.environ["PREFECT__CONTEXT__SECRETS__BENCH_CLONE_URL"] = url

import prefect  # noqa: E402
from prefect.storage import Git  # noqa: E402

storage = Git(flow_path=flow_path, git_clone_url_secret_name="BENCH_CLONE_URL", branch_name="main", add_default_labels=False)
storage.flows["bench"] = flow_path
times = []
for _ in range(reps):
    t0 = time.perf_counter()
    with prefect.context(secrets={"BENCH_CLONE_URL": url}):
        storage.get_flow("bench")
    times.append((time.perf_counter() - t0) * 1000)
print(json.dumps({"ms": sorted(times)[len(times) // 2], "reps": times}))
