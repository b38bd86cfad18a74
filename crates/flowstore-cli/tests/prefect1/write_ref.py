"""Peer side of tests/prefect1_interop.rs: the real Prefect 1.4.1 (from PyPI) registers a flow.

Usage: write_ref.py KIND CONFIG_JSON

KIND is local-pickle, local-script, s3-pickle, s3-script, git or github. CONFIG_JSON holds what
the kind needs (flow name, directory, script path, bucket, endpoint, repository, ...). The flow
is added to a Prefect storage the way `prefect register` does it (`add_flow`, then `build()`).
The bytes Prefect stored are written to `{out_dir}/stored` (not for the read-only Git and GitHub
storages: their file is committed in the repository); for a pickled flow, the pickle inside
Prefect's payload (`{"flow": base64(pickle), "versions": ...}`) goes to `{out_dir}/pickle`. The
last line printed is JSON: the storage reference Prefect serializes (`serialize()`, what the
orchestrator keeps), the flow's location, and the payload's versions (pickled flows).
"""
import base64
import json
import os
import sys

import prefect
from prefect import Flow, task
from prefect.storage import S3, Git, GitHub, Local


@task
def add(x, y):
    return x + y


def pickled_flow(name):
    with Flow(name) as flow:
        add(20, 22)
    return flow


def main():
    kind, config = sys.argv[1], json.loads(sys.argv[2])
    assert prefect.__version__ == "1.4.1", prefect.__version__
    name = config["name"]
    stored = None
    if kind == "local-pickle":
        storage = Local(
            directory=config["directory"], path=config.get("path"), add_default_labels=False
        )
        flow = pickled_flow(name)
    elif kind == "local-script":
        storage = Local(path=config["script"], stored_as_script=True, add_default_labels=False)
        flow = Flow(name)
    elif kind in ("s3-pickle", "s3-script"):
        options = {"endpoint_url": config["endpoint"], "region_name": "us-east-1"}
        if kind == "s3-pickle":
            storage = S3(bucket=config["bucket"], client_options=options)
            flow = pickled_flow(name)
        else:
            storage = S3(
                bucket=config["bucket"],
                client_options=options,
                stored_as_script=True,
                local_script_path=config["script"],
            )
            flow = Flow(name)
    elif kind == "git":
        storage = Git(
            flow_path=config["flow_path"],
            repo=config["repo"],
            flow_name=name,
            git_clone_url_secret_name=config["clone_url_secret"],
            branch_name=config["branch"],
        )
        flow = Flow(name)
    elif kind == "github":
        storage = GitHub(
            repo=config["repo"],
            path=config["path"],
            ref=config.get("ref"),
            access_token_secret=config["token_secret"],
            base_url=config["base_url"],
        )
        flow = Flow(name)
    else:
        raise SystemExit(f"unknown kind {kind!r}")

    location = storage.add_flow(flow)
    storage.build()
    reference = storage.serialize()

    if kind == "local-pickle":
        with open(location, "rb") as f:
            stored = f.read()
    elif kind == "local-script":
        with open(config["script"], "rb") as f:
            stored = f.read()
    elif kind.startswith("s3-"):
        body = storage._boto3_client.get_object(Bucket=config["bucket"], Key=location)["Body"]
        stored = body.read()

    versions = None
    if stored is not None:
        with open(os.path.join(config["out_dir"], "stored"), "wb") as f:
            f.write(stored)
        if kind.endswith("-pickle"):
            payload = json.loads(stored)
            versions = payload["versions"]
            with open(os.path.join(config["out_dir"], "pickle"), "wb") as f:
                f.write(base64.b64decode(payload["flow"]))
    print(json.dumps({"reference": reference, "location": location, "versions": versions}))


if __name__ == "__main__":
    main()
