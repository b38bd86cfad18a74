#!/usr/bin/env bash
# The Prefect 1.4.1 peer of the interop tests and the bench: `cargo xtask test` (and `bench`)
# make its virtualenv under target/ with `python3 -m venv` + pip (xtask/src/servers/prefect1.rs).
# Debian's python3 ships without the venv module (and ensurepip): install python3-venv if a
# throwaway venv cannot be made.
set -euo pipefail
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
if ! python3 -m venv "$probe/venv" >/dev/null 2>&1; then
  apt-get install -y -q python3-venv >/dev/null
  python3 -m venv "$probe/venv"
fi
