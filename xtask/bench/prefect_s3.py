"""Prefect 1 baseline for `cargo xtask bench` (S3 section): Prefect 1.4.1's `S3` storage (boto3)
against the same server: N pickled flows carrying SIZE bytes, one `add_flow` + `build` each, then
`get_flow` each; and the big file through boto3's `upload_file` / `download_fileobj`, the calls
Prefect's script mode makes (its `get_flow` then execs the script, which is left out here).
Prints median per-flow milliseconds and MiB/s as JSON.
"""
import io
import json
import os
import sys
import time

import boto3
from prefect import Flow, Task
from prefect.storage import S3

endpoint, bucket, n, size, big_mib, reps, scratch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIABENCH")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
opts = {"endpoint_url": endpoint, "region_name": "us-east-1"}


class Payload(Task):
    def __init__(self, data, **kw):
        self.data = data
        super().__init__(**kw)

    def run(self):
        return len(self.data)


flows = []
for i in range(n):
    f = Flow(f"flow-{i}")
    f.add_task(Payload(bytes((i * 7 + j) % 251 for j in range(size))))
    flows.append(f)

put, get = [], []
for rep in range(reps):
    storages = []
    t0 = time.perf_counter()
    for f in flows:
        s = S3(bucket=bucket, client_options=opts, add_default_labels=False)
        s.add_flow(f)
        s.build()
        storages.append((s, f.name))
    t1 = time.perf_counter()
    for s, name in storages:
        s.get_flow(name)
    t2 = time.perf_counter()
    put.append((t1 - t0) * 1000 / n)
    get.append((t2 - t1) * 1000 / n)

big = os.path.join(scratch, "big.py")
client = boto3.client("s3", **opts)
mib = float(big_mib)
t0 = time.perf_counter()
client.upload_file(big, bucket, f"prefect-big-{os.getpid()}")
big_put = mib / (time.perf_counter() - t0)
buf = io.BytesIO()
t0 = time.perf_counter()
client.download_fileobj(bucket, f"prefect-big-{os.getpid()}", buf)
big_get = mib / (time.perf_counter() - t0)
med = lambda v: sorted(v)[len(v) // 2]
print(json.dumps({"put_ms": med(put), "get_ms": med(get), "big_put_mib_s": big_put, "big_get_mib_s": big_get}))
