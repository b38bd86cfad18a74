#!/usr/bin/env bash
# The real_world server set (xtask/src/servers/real_world.rs): botocore (the AWS SDK core for
# Python), whose service model and SigV4 signer judge every CodeCommit request flowstore sends
# (moto's install brings it too; this makes the judge independent of that), and pip, which
# downloads pybitbucket's recorded Bitbucket Cloud answers at test time.
set -euo pipefail
if ! python3 -c 'import botocore.session, botocore.auth, botocore.validate' >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore botocore
fi
