#!/usr/bin/env bash
# The runtimes the other install scripts use: python3 with pip (moto, fake-gcs-server,
# botocore, the Azure SDK, Prefect 1's virtualenv) and npm (Azurite). A no-op where they are
# already there; on a bare Debian it installs them with apt.
set -euo pipefail
need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -q "${need[@]}" >/dev/null
fi
# Debian's own python3 refuses `pip install` outside a virtualenv (PEP 668, an
# EXTERNALLY-MANAGED marker): the servers here are test tools on a throwaway CI machine, so
# let pip install them there.
if python3 -c 'import os, sysconfig, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
  python3 -m pip config --global set global.break-system-packages true >/dev/null
fi
