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
# the reference card's quoted 0.7146 belongs to the GOP debate data: drawn only when a DATA_FILE (GOP) is given
# Fine-tune settings, chosen by measurement (README, "The GOP demo"): on GOP, 300 steps of 16 tweets at lr 1e-4
# (about 2 min of steps here) reach 0.68-0.70 end to end, well above the majority class (0.62), where lr 2e-5
# batch 8 stayed at the majority class. The sample (300 rows) takes 30 steps at lr 2e-5.
if [ -z "${1:-}" ]; then LABEL=label; STEPS=${STEPS:-30}; LR=${LR:-2e-5}; BATCH=${BATCH:-8}; REFERENCE=""
else LABEL=${LABEL:-sentiment}; STEPS=${STEPS:-300}; LR=${LR:-1e-4}; BATCH=${BATCH:-16}; REFERENCE="--reference card"; fi
export TWEETHEADS_CACHE_DIR="${TWEETHEADS_CACHE_DIR:-$OUT/cache}"
# a rerun starts over: the demo's own outputs go, its embedding cache stays (a rerun encodes nothing new)
rm -rf "$OUT/split" "$OUT/run" "$OUT/heads" "$OUT/report" "$OUT/eval.npy" "$OUT/scored.csv" "$OUT/scored.rejects.csv"
set -x
"$PY" cli.py split "$DATA" --eval-fraction 0.2 --seed 42 -o "$OUT/split"
"$PY" cli.py finetune --model minilm --train "$OUT/split/train.csv" --eval "$OUT/split/eval.csv" \
  --label-col "$LABEL" --lr "$LR" --train-batch-size "$BATCH" --max-steps "$STEPS" --max-length 128 -o "$OUT/run"
"$PY" cli.py embed --model "$OUT/run" "$OUT/split/eval.csv" -o "$OUT/eval.npy"
for head in logistic lightgbm knn; do
  "$PY" cli.py train-head --head "$head" --model "$OUT/run" --train "$OUT/split/train.csv" \
    --eval "$OUT/split/eval.csv" --label-col "$LABEL" -o "$OUT/heads/$head"
done
"$PY" cli.py compare --model "$OUT/run" --test "$OUT/split/eval.csv" --train "$OUT/split/train.csv" \
  --label-col "$LABEL" "$OUT/heads/logistic" "$OUT/heads/lightgbm" "$OUT/heads/knn" $REFERENCE -o "$OUT/report"
"$PY" cli.py score --model "$OUT/run" --head "$OUT/heads/logistic" "$OUT/split/eval.csv" -o "$OUT/scored.csv"
echo "What a great debate tonight" | "$PY" cli.py predict --model "$OUT/run" --head "$OUT/heads/logistic" -
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
Score your own tweets:  $PY cli.py score --model $OUT/run --head $OUT/heads/logistic YOUR.csv -o scored.csv
Predict a few:          $PY cli.py predict --model $OUT/run --head $OUT/heads/logistic "what a debate" "so boring"
== the demo took $SECONDS s ==
EOF
