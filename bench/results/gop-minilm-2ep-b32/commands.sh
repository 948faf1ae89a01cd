#!/bin/bash
# MiniLM fine-tuned end to end on all GOP labels at 32 a batch (SetFit's 32 texts a step), 2 epochs
# (SetFit's all-labels budget in text passes: 22,192), bf16 autocast (finetune's default on a CPU with
# bf16 units), at two learning rates: 2e-5 (SetFit's body rate, our 8-a-batch recipe) and 5e-5 (the HF
# Trainer's default). Then the three heads on each run's cached CLS vectors and compare. Run from the
# repository root after
# `python cli.py split ../shared/data/gop-debate/Sentiment.csv --eval-fraction 0.2 --seed 42 --out-dir runs/gop`.
set -e
export HF_HUB_OFFLINE=1
OUT=bench/results/gop-minilm-2ep-b32
for lr in 2e-5 5e-5; do
  RUN=runs/gop-minilm-2ep-b32-$lr
  resume=""; [ -d $RUN/checkpoint ] && resume="--resume"
  date -u +%FT%TZ
  grep -qs '"interrupted": false' $RUN/tweetheads_run.json || \
    .venv/bin/python cli.py finetune --model minilm --train runs/gop/train.csv --eval runs/gop/eval.csv \
      --label-col sentiment --lr $lr --epochs 2 --train-batch-size 32 --eval-batch-size 64 --precision auto \
      --save-every 500 --out $RUN $resume
  date -u +%FT%TZ
  for h in logistic lightgbm knn; do
    /usr/bin/time -f "%e s wall" .venv/bin/python cli.py train-head --head $h --model $RUN \
      --train runs/gop/train.csv --eval runs/gop/eval.csv --label-col sentiment --out $RUN-heads/$h
  done
  .venv/bin/python cli.py compare --model $RUN --test runs/gop/eval.csv --label-col sentiment \
    --report-dir $OUT/lr-$lr $RUN-heads/logistic $RUN-heads/lightgbm $RUN-heads/knn
  cp $RUN/README.md $OUT/lr-$lr/model_card.md; cp $RUN/metrics.json $OUT/lr-$lr/metrics.json
  date -u +%FT%TZ
done
echo done
