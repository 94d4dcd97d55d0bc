#!/usr/bin/env bash
# Produces the bundled default model, wsdeploy/assets/default_model.pt: these are the exact
# commands of the shipped file (its model card records the training command and val mIoU too).
#
# Data: CamVid in SegNet's 11-class 480x360 version, ../shared/data/camvid beside the checkout
# (personal and research use only, Creative Commons non-commercial; cite Brostow, Fauqueur &
# Cipolla, PRL 2009 and Brostow, Shotton, Fauqueur & Cipolla, ECCV 2008). Model: LR-ASPP on a
# width-16 ResNet-18 (0.7 M parameters, 2.8 MiB). Supervision: the benchmark's scribbles (one
# stroke per region, ~5.6% of the pixels) of the 367 train frames, partial cross-entropy plus the
# dense-CRF loss (weight 1.0, chosen on the tuning split; on from step 600 of 2000): the best
# scribble row of the CamVid table (benchmarks/camvid_table.py,
# benchmarks/results/camvid_scribble_table.json: pce+crf over seeds 0 and 1). The shipped file is
# that table's seed-0 run, runs/camvid_table/pce_crf_seed0 (seed 0 was fixed as the choice before
# the results); make_default_model.py adds the CamVid palette, the data, the license note and the
# row's spread to its card. About 11 minutes at one thread on the 2-core AMD EPYC.
# OMP_NUM_THREADS=1: on a busy 2-core machine two OpenMP threads per process oversubscribe the
# CPU and run several times slower; one thread is the safe choice (and deterministic here).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
"$BIN/python" scripts/prepare_camvid.py
OMP_NUM_THREADS=1 "$BIN/wsdeploy" train --data data/camvid --train-split train --val-split val \
    --supervision scribbles --crop-size 128 --scale-min 0.5 --scale-max 1.0 --workers 0 \
    --model lraspp_resnet18 --width 16 --losses pce,crf --crf-weight 1.0 --crf-sigma-rgb 15.0 \
    --crf-sigma-xy 50.0 --regularizers-from-step 600 --optimizer adamw --lr 0.003 \
    --weight-decay 0.0001 --steps 2000 --batch-size 8 --out-dir runs/camvid_table/pce_crf_seed0 \
    --checkpoint-every 200 --log-every 50 --no-tensorboard --no-progress
"$BIN/python" scripts/make_default_model.py --row pce+crf --seed 0
echo "wrote wsdeploy/assets/default_model.pt"
