#!/usr/bin/env bash
# One device-tool call on the lent GPU machine, after `bash bench/gpu_prepare.sh` here:
#   1. bench/gpu_speed.py: embed vs encode() fp32/fp16/bf16, a 200-step fine-tune, exact kNN (-> $OUT/gpu.md)
#   2. the card reproduced: `finetune` with the card's defaults (lr 1e-6, batch 8, 20 epochs, seed 42,
#      Adam, linear schedule, fp32) with MiniLM on the GOP 80/20 split (-> $OUT/card-metrics.json and
#      the fine-tuned run packed by scripts/ship_model.py into $OUT/card/model.tar.partNN)
#   3. the faster recipe (lr 2e-5, 2 epochs) on the same split (-> $OUT/fast-metrics.json)
# Each step has a time limit (CARD_S, FAST_S seconds); a card run cut by its limit stops cleanly
# (SIGINT: checkpoint + metrics so far), and running this script again on the same (warm) machine
# continues it with --resume and skips step 1 (SKIP_SPEED=1 skips it anyway).
# Runs live in $RUNS (/tmp/tweetheads-gpu), outside the repository copy: the device tool replaces a
# carried folder (.gpu) on every call, which is how a first session lost its checkpoint at epoch 9.
# A dry run on the CPU: DEVICE=cpu DRY=1 CARD_ARGS="--max-steps 6 --max-train-rows 48" bash bench/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-session-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD/.gpu/site:$PWD" TWEETHEADS_DATA_DIR="$PWD/.gpu/data"
export TWEETHEADS_MINILM_DIR="${TWEETHEADS_MINILM_DIR:-/tmp/minilm}"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
CARD_S="${CARD_S:-330}" FAST_S="${FAST_S:-60}"
RUNS="${RUNS:-/tmp/tweetheads-gpu}"
mkdir -p "$RUNS"
SPLIT=(--train .gpu/split/train.csv --eval .gpu/split/eval.csv --label-col sentiment --model minilm
       --device "$DEVICE" --cache-dir /tmp/tweetheads-cache --save-every 1000000)

echo "== $(date -u +%FT%TZ) $("$PY" -c 'import torch, transformers, sentence_transformers as s; print("torch", torch.__version__, "transformers", transformers.__version__, "sentence-transformers", s.__version__)')"
[ -f "$TWEETHEADS_MINILM_DIR/model.safetensors" ] || "$PY" scripts/ship_model.py unpack .gpu/minilm "$TWEETHEADS_MINILM_DIR" || exit 1

resume=()
if [ -d "$RUNS/card"/checkpoint ]; then resume=(--resume); SKIP_SPEED=1; fi
if [ -z "${SKIP_SPEED:-}" ]; then
    echo "== $(date -u +%T) bench/gpu_speed.py"
    timeout -k 10 "${SPEED_S:-170}" "$PY" bench/gpu_speed.py --out "$OUT" ${DRY:+--dry-run} 2>&1 | grep -v "^\[.*round"
fi

echo "== $(date -u +%T) the card's recipe, fp32 ${resume[*]}"
start=$(date +%s)
timeout -s INT -k 30 "$CARD_S" "$PY" cli.py finetune "${SPLIT[@]}" --out "$RUNS/card" --precision fp32 \
    "${resume[@]}" ${CARD_ARGS:-}
echo "card: exit $?, $(( $(date +%s) - start )) s wall"
cp "$RUNS/card"/metrics.json "$OUT/card-metrics.json" 2>/dev/null
"$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); [print(r) for r in m["history"]]; print("interrupted:", m["interrupted"], "train_seconds:", round(m["train_seconds"]), "ex/s:", round(m["examples_per_second"] or 0, 1))' "$RUNS/card"/metrics.json

if ! grep -q '"interrupted": true' "$RUNS/card"/metrics.json 2>/dev/null && [ ! -f "$RUNS/fast"/metrics.json ]; then
    echo "== $(date -u +%T) faster recipe: lr 2e-5, 2 epochs"
    start=$(date +%s)
    rm -rf "$RUNS/fast"
    timeout -s INT -k 30 "$FAST_S" "$PY" cli.py finetune "${SPLIT[@]}" --out "$RUNS/fast" --lr 2e-5 --epochs 2 \
        --precision fp32 ${FAST_ARGS:-}
    echo "fast: exit $?, $(( $(date +%s) - start )) s wall"
    cp "$RUNS/fast"/metrics.json "$OUT/fast-metrics.json" 2>/dev/null
fi
if grep -q '"interrupted": false' "$RUNS/card"/metrics.json 2>/dev/null; then
    rm -rf "$OUT/card" && "$PY" scripts/ship_model.py pack "$RUNS/card" "$OUT/card"
fi
echo "== $(date -u +%T) done"; ls -la "$OUT" "$OUT/card" 2>/dev/null
