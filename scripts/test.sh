#!/usr/bin/env bash
# Set up on first use, then run the whole test suite (slow tests included) offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec "${TWEETHEADS_VENV:-.venv}/bin/python" -m pytest -q "$@"
