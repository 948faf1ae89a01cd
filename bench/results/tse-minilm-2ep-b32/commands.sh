#!/bin/bash
# MiniLM fine-tuned end to end on all tweet_sentiment_extraction labels (train.csv -> test.csv) at 32 a
# batch, 2 epochs, bf16 autocast (finetune's default on a CPU with bf16 units), the learning rate that
# did better on GOP at 32 a batch (bench/results/gop-minilm-2ep-b32); then the three heads on its cached
# CLS vectors and compare. The split is the peers' (its one empty-text row left out of train.csv):
# `python bench/setfit_peer.py --data tse ... --work runs/setfit-128` writes runs/setfit-128/tse/split.
set -e
export HF_HUB_OFFLINE=1
LR=${LR:-5e-5}
SPLIT=runs/setfit-128/tse/split
RUN=runs/tse-minilm-2ep-b32
OUT=bench/results/tse-minilm-2ep-b32
[ -f $SPLIT/test.csv ] || PYTHONPATH=bench .venv/bin/python -c "import common; \
from pathlib import Path; print(common.peer_data_files('tse', Path('runs/setfit-128/tse')))"
resume=""; [ -d $RUN/checkpoint ] && resume="--resume"
date -u +%FT%TZ
grep -qs '"interrupted": false' $RUN/tweetheads_run.json || \
  .venv/bin/python cli.py finetune --model minilm --train $SPLIT/train.csv --eval $SPLIT/test.csv \
    --label-col sentiment --lr $LR --epochs 2 --train-batch-size 32 --eval-batch-size 64 --precision auto \
    --save-every 500 --out $RUN $resume
date -u +%FT%TZ
for h in logistic lightgbm knn; do
  /usr/bin/time -f "%e s wall" .venv/bin/python cli.py train-head --head $h --model $RUN \
    --train $SPLIT/train.csv --eval $SPLIT/test.csv --label-col sentiment --out $RUN-heads/$h
done
.venv/bin/python cli.py compare --model $RUN --test $SPLIT/test.csv --label-col sentiment \
  --report-dir $OUT $RUN-heads/logistic $RUN-heads/lightgbm $RUN-heads/knn
cp $RUN/README.md $OUT/model_card.md; cp $RUN/metrics.json $OUT/metrics.json
date -u +%FT%TZ
echo done
