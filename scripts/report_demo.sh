#!/usr/bin/env bash
# `pstl report` on real results of a tiny synthetic reproduction (CPU, a few minutes):
# 3 streams (an 8-channel ST-GCN) pretrained for 1 epoch on 5 classes x 20 samples, then the protocols of
# scripts/reproduce.sh with short schedules, then the paper-layout table.
# The figures mean nothing about PSTL; they show the pipeline end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PSTL:-target/release/pstl}
RUNS=${RUNS:-runs/report-demo}
STORE=$RUNS/synthetic-5.h5
mkdir -p "$RUNS"
[ -f "$STORE" ] || $BIN synth --out "$STORE" --classes 5 --train-per-class 20 --test-per-class 10
SHORT=(--set model.base_channels=8 --set model.feature_dim=64 --set eval.linear_epochs=30
       --set eval.finetune_epochs=3 --set eval.batch_size=20 --set eval.robust_draws=1
       --set eval.robust_max_k=2)
for s in joint motion bone; do
  common=(--config configs/synthetic.toml --set "run.name=\"demo_$s\"" --set "run.dir=\"$RUNS\""
          --set "data.path=\"$STORE\"" --set "data.stream=\"$s\"" "${SHORT[@]}")
  $BIN pretrain "${common[@]}" --set pretrain.epochs=1 --set pretrain.batch_size=20 --set model.projector_dim=64 \
    --set eval.after_pretrain=false
  enc=$RUNS/demo_$s/encoder.safetensors
  protocols=(linear finetune)
  [ "$s" = joint ] && protocols+=(knn semi)
  for p in "${protocols[@]}"; do
    $BIN eval "$p" "${common[@]}" --checkpoint "$enc"
  done
  if [ "$s" = joint ]; then
    $BIN eval robust "${common[@]}" --checkpoint "$enc" \
      --classifier "$RUNS/demo_$s/eval-linear/classifier.safetensors" --parts left_arm,right_arm
    $BIN eval linear "${common[@]}" --out "$RUNS/demo_random/eval-linear"
  fi
done
for p in linear finetune; do
  $BIN eval ensemble --config configs/synthetic.toml --set "data.path=\"$STORE\"" \
    --out "$RUNS/demo_ensemble-$p" --scores "$RUNS"/demo_{joint,motion,bone}/eval-$p/scores.npy
done
$BIN report "$RUNS" --out "$RUNS/paper-table.md"
cat "$RUNS/paper-table.md"
