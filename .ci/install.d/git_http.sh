#!/usr/bin/env bash
# git smart HTTP (git http-backend behind nginx + fcgiwrap) for the Git backend's tests.
set -euo pipefail
# git itself (git daemon, git http-backend, and the tests' `git` commands); CI's clone has it,
# a bare machine may not.
command -v git >/dev/null 2>&1 || apt-get install -y -q git >/dev/null
command -v nginx >/dev/null 2>&1 || apt-get install -y -q nginx >/dev/null
command -v fcgiwrap >/dev/null 2>&1 || [ -x /usr/sbin/fcgiwrap ] || apt-get install -y -q fcgiwrap >/dev/null
