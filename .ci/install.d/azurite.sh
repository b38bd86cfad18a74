#!/usr/bin/env bash
# Azurite (Azure Blob emulator) for the Azure backend's tests.
set -euo pipefail
if ! command -v azurite-blob >/dev/null 2>&1; then
  npm install -g --silent azurite >/dev/null
fi
# The test setup creates its container with the Azure SDK for Python.
if ! python3 -c 'import azure.storage.blob' >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore azure-storage-blob
fi
