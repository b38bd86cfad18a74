"""Prefect 1 baseline for `cargo xtask bench` section 1: Local storage, in-process.

Registers then fetches N pickled flows (each carrying SIZE bytes so the pickle is a few KiB) with
Prefect 1.4.1's Local storage (`add_flow` + `build`, then `get_flow`), REPS times, and prints the
median rates as JSON. Interpreter start-up and imports are outside the timed region.
"""
import json
import os
import shutil
import sys
import tempfile
import time

from prefect import Flow, Task
from prefect.storage import Local

n, size, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])


class Payload(Task):
    def __init__(self, data, **kw):
        self.data = data
        super().__init__(**kw)

    def run(self):
        return len(self.data)


flows = []
for i in range(n):
    f = Flow(f"flow-{i}")
    f.add_task(Payload(bytes((i * 31 + j * 7) % 251 for j in range(size))))
    flows.append(f)

reg, fetch = [], []
dirs = []  # removed after the timed work, as the flowstore driver does
for rep in range(reps):
    d = tempfile.mkdtemp(prefix="prefect-bench-")
    t0 = time.perf_counter()
    storage = Local(directory=d, add_default_labels=False)
    for f in flows:
        storage.add_flow(f)
    storage.build()
    t1 = time.perf_counter()
    for f in flows:
        storage.get_flow(f.name)
    t2 = time.perf_counter()
    reg.append(n / (t1 - t0))
    fetch.append(n / (t2 - t1))
    sample = os.path.getsize(storage.flows[flows[0].name])
    dirs.append(d)
for d in dirs:
    shutil.rmtree(d)

med = lambda v: sorted(v)[len(v) // 2]
print(json.dumps({"register_per_s": med(reg), "fetch_per_s": med(fetch),
                  "register_reps": reg, "fetch_reps": fetch, "stored_bytes": sample}))
