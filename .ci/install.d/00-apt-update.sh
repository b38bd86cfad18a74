#!/usr/bin/env bash
# Refresh Debian's package lists once (other install scripts use apt-get install).
set -euo pipefail
stamp=/var/lib/apt/periodic/flowstore-apt-update
if [ ! -e "$stamp" ] || [ -n "$(find "$stamp" -mmin +720 2>/dev/null)" ]; then
  apt-get update -q >/dev/null
  mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
