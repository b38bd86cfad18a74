#!/usr/bin/env bash
# moto's S3-compatible server for the S3 backend's tests.
set -euo pipefail
if ! python3 -c 'import moto.server, flask' >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'moto[server]'
fi
