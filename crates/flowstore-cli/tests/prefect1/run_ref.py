"""Peer side of tests/prefect1_interop.rs: the real Prefect 1.4.1 (from PyPI) runs a flow from a
storage reference, as its agent does.

Usage: run_ref.py REFERENCE_FILE FLOW_NAME
       run_ref.py --pickle PICKLE_FILE FLOW_NAME

Loads the reference with Prefect's own `StorageSchema` and calls `storage.get_flow(FLOW_NAME)`
(with `--pickle`: loads the flow from pickle bytes with cloudpickle, as Prefect's
`flow_from_bytes_pickle` does), runs the flow (`flow.run()`), and prints as the last line JSON:
the storage class Prefect built, the flow's name, whether the run succeeded, and each task's
result by task name.
"""
import json
import sys

import cloudpickle
import prefect
from prefect.serialization.storage import StorageSchema


def main():
    assert prefect.__version__ == "1.4.1", prefect.__version__
    if sys.argv[1] == "--pickle":
        with open(sys.argv[2], "rb") as f:
            flow = cloudpickle.loads(f.read())
        storage = None
        assert flow.name == sys.argv[3], (flow.name, sys.argv[3])
    else:
        with open(sys.argv[1]) as f:
            reference = json.load(f)
        storage = StorageSchema().load(reference)
        flow = storage.get_flow(sys.argv[2])
    state = flow.run()
    results = {task.name: result.result for task, result in state.result.items()}
    print(
        json.dumps(
            {
                "storage": None if storage is None else type(storage).__name__,
                "flow": flow.name,
                "success": state.is_successful(),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
