#!/usr/bin/env bash
# strace, for the CLI's git_cache_kills tests: they kill `flowstore fetch` with strace's fault
# injection at the exact syscall where libgit2 (or the cache) holds a lock file or a temporary.
set -euo pipefail
command -v strace >/dev/null 2>&1 || apt-get install -y -q strace >/dev/null
