#!/usr/bin/env bash
# nginx for the Webhook backend's tests: WebDAV PUT/GET/DELETE (dav module) and JSON directory
# listings (autoindex module), both built into Debian's nginx.
set -euo pipefail
if ! command -v nginx >/dev/null 2>&1; then
  apt-get install -y -q nginx >/dev/null
fi
