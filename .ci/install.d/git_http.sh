#!/usr/bin/env bash
# git smart HTTP (git http-backend behind nginx + fcgiwrap) for the Git backend's tests.
set -euo pipefail
command -v nginx >/dev/null 2>&1 || apt-get install -y -q nginx >/dev/null
command -v fcgiwrap >/dev/null 2>&1 || [ -x /usr/sbin/fcgiwrap ] || apt-get install -y -q fcgiwrap >/dev/null
