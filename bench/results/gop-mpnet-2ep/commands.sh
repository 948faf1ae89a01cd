#!/bin/bash
# waits for the MPNet fine-tune to end, then: the three heads on its cached CLS vectors and compare
cd /work/main
export HF_HUB_OFFLINE=1
while pgrep -f "cli.py finetune --model mpnet" >/dev/null; do sleep 20; done
RUN=runs/gop-mpnet-2ep
grep -q '"interrupted": false' $RUN/metrics.json || { echo "fine-tune did not finish"; exit 1; }
date -u +%FT%TZ
for h in logistic lightgbm knn; do
  /usr/bin/time -f "%e s wall" .venv/bin/python cli.py train-head --head $h --model $RUN --train runs/gop/train.csv \
    --eval runs/gop/eval.csv --label-col sentiment --out runs/gop-mpnet-2ep-heads/$h || exit 1
  date -u +%FT%TZ
done
.venv/bin/python cli.py compare --model $RUN --test runs/gop/eval.csv --label-col sentiment \
  --report-dir bench/results/gop-mpnet-2ep runs/gop-mpnet-2ep-heads/logistic runs/gop-mpnet-2ep-heads/lightgbm runs/gop-mpnet-2ep-heads/knn
date -u +%FT%TZ
cp $RUN/README.md bench/results/gop-mpnet-2ep/model_card.md; cp $RUN/metrics.json bench/results/gop-mpnet-2ep/metrics.json
echo done
