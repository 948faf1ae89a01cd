#!/usr/bin/env bash
# The main job end to end: split, a short fine-tune on the packaged MiniLM, embed, the three heads,
# compare, and batch scoring. Usage: bash scripts/demo.sh [DATA_FILE] [OUT_DIR]
#   DATA_FILE: a CSV with `text` and `sentiment` columns (e.g. the GOP debate Sentiment.csv);
#   without one it runs on the sample tweets shipped in embed/samples/tweets.csv (label column `label`).
#   OUT_DIR (default out/demo): a rerun replaces the demo's outputs there and keeps OUT_DIR/cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
PY="${TWEETHEADS_VENV:-.venv}/bin/python"
DATA="${1:-embed/samples/tweets.csv}"
OUT="${2:-out/demo}"
if [ -z "${1:-}" ]; then LABEL=label; STEPS=${STEPS:-30}; else LABEL=${LABEL:-sentiment}; STEPS=${STEPS:-300}; fi
export TWEETHEADS_CACHE_DIR="${TWEETHEADS_CACHE_DIR:-$OUT/cache}"
# a rerun starts over: the demo's own outputs go, its embedding cache stays (a rerun encodes nothing new)
rm -rf "$OUT/split" "$OUT/run" "$OUT/heads" "$OUT/report" "$OUT/eval.npy" "$OUT/scored.csv" "$OUT/scored.rejects.csv"
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
{ set +x; } 2>/dev/null
PLOTS=$(cd "$OUT/report" && ls -- *.png | paste -sd' ' -)
cat <<EOF

== what the demo made (all under $OUT/) ==
  comparison report:  $OUT/report/report.md  (the tables above; every figure in results.json)
  plots:              $OUT/report/: $PLOTS
  scored file:        $OUT/scored.csv  (every input column, then pred_label, pred_proba_<class>, pred_model, pred_head)
  rejects file:       $OUT/scored.rejects.csv  (rows that could not be scored, with file, line, reason)
  fine-tuned run:     $OUT/run/  (encoder, end-to-end classifier, metrics.json, model card README.md)
  heads:              $OUT/heads/logistic/  $OUT/heads/lightgbm/  $OUT/heads/knn/
Score your own tweets:  $PY cli.py score --model $OUT/run --head $OUT/heads/logistic YOUR.csv --output scored.csv
EOF
