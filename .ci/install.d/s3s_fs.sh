#!/usr/bin/env bash
# s3s-fs 0.14.1, an S3 server that checks SigV4 signatures, for the S3 signing tests
# (crates/flowstore-cloud/tests/s3_sigv4.rs) and the bench. Idempotent: installs only when no
# s3s-fs 0.14.1 is on PATH or in cargo's bin directory.
set -euo pipefail
want="s3s-fs 0.14.1"
for bin in s3s-fs "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"; do
  if [ "$("$bin" --version 2>/dev/null || true)" = "$want" ]; then
    exit 0
  fi
done
cargo install s3s-fs@0.14.1 --features binary --locked
