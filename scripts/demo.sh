#!/usr/bin/env bash
# The main job end to end: split, a short fine-tune on the packaged MiniLM, embed, the three heads,
# compare, and batch scoring. Usage: bash scripts/demo.sh [DATA_FILE] [OUT_DIR]
#   DATA_FILE: a CSV with `text` and `sentiment` columns (e.g. the GOP debate Sentiment.csv);
#   without one it runs on the sample tweets shipped in embed/samples/tweets.csv (label column `label`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
PY="${TWEETHEADS_VENV:-.venv}/bin/python"
DATA="${1:-embed/samples/tweets.csv}"
OUT="${2:-out/demo}"
if [ -z "${1:-}" ]; then LABEL=label; STEPS=${STEPS:-30}; else LABEL=${LABEL:-sentiment}; STEPS=${STEPS:-300}; fi
export TWEETHEADS_CACHE_DIR="${TWEETHEADS_CACHE_DIR:-$OUT/cache}"
set -x
"$PY" cli.py split "$DATA" --eval-fraction 0.2 --seed 42 --out-dir "$OUT/split"
"$PY" cli.py finetune --model minilm --train "$OUT/split/train.csv" --eval "$OUT/split/eval.csv" \
  --label-col "$LABEL" --lr 2e-5 --max-steps "$STEPS" --max-length 128 --out "$OUT/run"
"$PY" cli.py embed --model "$OUT/run" --input "$OUT/split/eval.csv" --output "$OUT/eval.npy"
for head in logistic lightgbm knn; do
  "$PY" cli.py train-head --head "$head" --model "$OUT/run" --train "$OUT/split/train.csv" \
    --eval "$OUT/split/eval.csv" --label-col "$LABEL" --out "$OUT/heads/$head"
done
"$PY" cli.py compare --model "$OUT/run" --test "$OUT/split/eval.csv" --train "$OUT/split/train.csv" \
  --label-col "$LABEL" "$OUT/heads/logistic" "$OUT/heads/lightgbm" "$OUT/heads/knn" --report-dir "$OUT/report"
"$PY" cli.py score --model "$OUT/run" --head "$OUT/heads/logistic" "$OUT/split/eval.csv" --output "$OUT/scored.csv"
