"""Peer side of tests/prefect1_interop.rs: the keys the real Prefect 1.4.1 (from PyPI) gives flows.

Usage: slugs.py DIRECTORY < names.json

For every flow name (a JSON list on stdin), Prefect's own `add_flow` computes the key: Local
storage (serialized mode, in DIRECTORY) and S3 storage (no upload: the key is computed by
`add_flow`, the upload happens at `build()`, never called here). Prints as the last line JSON
`{name: {"local": the location relative to DIRECTORY, "s3": the key}}` (segments joined by `/`).
"""
import json
import os
import sys

import prefect
from prefect import Flow
from prefect.storage import S3, Local


def main():
    assert prefect.__version__ == "1.4.1", prefect.__version__
    directory = sys.argv[1]
    names = json.load(sys.stdin)
    out = {}
    for name in names:
        local = Local(directory=directory, add_default_labels=False)
        location = local.add_flow(Flow(name))
        relative = os.path.relpath(location, directory).replace(os.sep, "/")
        key = S3(bucket="unused").add_flow(Flow(name))
        out[name] = {"local": relative, "s3": key}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
