#!/usr/bin/env bash
# Produces the bundled default model, wsdeploy/assets/default_model.pt: these are the exact
# commands of the shipped file (its model card records the training command and val mIoU too).
#
# Data: 800 synthetic images at 128 px, seed 1 (the bundled demo data uses seed 0, so the demo's
# val images are never seen in training). Model: DeepLabV3+ on a width-16 ResNet-18 (1.0 M
# parameters, 4 MiB). Supervision: full masks (the reference budget of
# scripts/calibrate_synthetic.py: AdamW 3e-3, batch 8, 3000 steps, flips only).
# OMP_NUM_THREADS=1: on a busy 2-core machine two OpenMP threads per process oversubscribe the
# CPU and run several times slower (measured by the calibration); one thread is the safe choice.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/synthetic-128-seed1}
OUT=${OUT:-runs/default_model}
BIN=${BIN:-.venv/bin}
"$BIN/wsdeploy" make-dataset "$DATA" --num-images 800 --size 128 --seed 1 --overwrite --no-progress
OMP_NUM_THREADS=1 "$BIN/wsdeploy" train --data "$DATA" --supervision full --losses pce \
    --model deeplabv3plus_resnet18 --width 16 --output-stride 16 --crop-size 128 \
    --scale-min 1.0 --scale-max 1.0 --optimizer adamw --lr 3e-3 --weight-decay 1e-4 \
    --steps 3000 --batch-size 8 --workers 0 --checkpoint-every 500 --log-every 50 \
    --no-progress --no-tensorboard --out-dir "$OUT"
cp "$OUT/model.pt" wsdeploy/assets/default_model.pt
echo "wrote wsdeploy/assets/default_model.pt"
