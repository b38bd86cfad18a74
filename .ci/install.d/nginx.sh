#!/usr/bin/env bash
# nginx (WebDAV PUT/GET) for the Webhook backend's tests.
set -euo pipefail
if ! command -v nginx >/dev/null 2>&1; then
  apt-get install -y -q nginx >/dev/null
fi
