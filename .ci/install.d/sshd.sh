#!/usr/bin/env bash
# OpenSSH server (and ssh-keygen) for the Git backend's ssh tests.
set -euo pipefail
if ! [ -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null 2>&1; then
  apt-get install -y -q openssh-server >/dev/null
fi
mkdir -p /run/sshd
