#!/bin/bash
# MPNet (768-d, CLS) fine-tuned end to end in bf16 autocast (finetune's default on a CPU with bf16
# units), the quick recipe on the GOP 80/20 split; then the three heads on its cached 768-d CLS vectors
# (embed's default there: OpenVINO bf16) and compare. Run from the repository root after
# `python cli.py split ../shared/data/gop-debate/Sentiment.csv --eval-fraction 0.2 --seed 42 --out-dir runs/gop`.
set -e
export HF_HUB_OFFLINE=1
RUN=runs/gop-mpnet-2ep-bf16
OUT=bench/results/gop-mpnet-2ep-bf16
resume=""; [ -d $RUN/checkpoint ] && resume="--resume"
date -u +%FT%TZ
grep -qs '"interrupted": false' $RUN/tweetheads_run.json || \
  .venv/bin/python cli.py finetune --model mpnet --train runs/gop/train.csv --eval runs/gop/eval.csv --label-col sentiment \
    --lr 2e-5 --epochs 2 --precision auto --save-every 500 --out $RUN $resume
date -u +%FT%TZ
for h in logistic lightgbm knn; do
  /usr/bin/time -f "%e s wall" .venv/bin/python cli.py train-head --head $h --model $RUN --train runs/gop/train.csv \
    --eval runs/gop/eval.csv --label-col sentiment --out $RUN-heads/$h
  date -u +%FT%TZ
done
.venv/bin/python cli.py compare --model $RUN --test runs/gop/eval.csv --label-col sentiment \
  --report-dir $OUT $RUN-heads/logistic $RUN-heads/lightgbm $RUN-heads/knn
# the same heads and end-to-end model on fp32 vectors (torch-equal OpenVINO fp32): the inference precision's share
for h in logistic; do
  .venv/bin/python cli.py train-head --head $h --model $RUN --train runs/gop/train.csv --label-col sentiment \
    --precision fp32 --out $RUN-heads/$h-fp32
done
.venv/bin/python cli.py compare --model $RUN --test runs/gop/eval.csv --label-col sentiment --precision fp32 \
  --report-dir $OUT/fp32-vectors $RUN-heads/logistic-fp32
date -u +%FT%TZ
cp $RUN/README.md $OUT/model_card.md; cp $RUN/metrics.json $OUT/metrics.json
echo done
