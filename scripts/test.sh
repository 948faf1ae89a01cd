#!/usr/bin/env bash
# Set up on first use, then run the test suite (slow tests included) offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
# with no arguments: everything but the soak trials (repeats of fault tests CI already runs once) and
# the long GOP demo fine-tune; `-m soak` or `-m long` runs those, `bash scripts/test.sh tests/` everything
[ "$#" -gt 0 ] || set -- -m "not soak and not long"
exec "${TWEETHEADS_VENV:-.venv}/bin/python" -m pytest -q "$@"
