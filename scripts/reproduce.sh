#!/usr/bin/env bash
# Reproduce the paper's tables from raw data: prepare every dataset, pretrain every
# stream, run every protocol with the official configs, end with `pstl report`.
# Resumable: a store or a results.json that exists is kept, pretraining resumes from
# its checkpoint. `--dry-run` prints the plan and the estimated GPU hours from the
# pretraining throughput of `pstl bench` (or `--bench-rate SAMPLES_PER_S`).
#
# Usage: scripts/reproduce.sh [--dry-run] [--bench-rate R] DATA_DIR
# DATA_DIR holds the raw files (names as distributed):
#   ntu/nturgb+d_skeletons/*.skeleton        NTU RGB+D 60 and 120 skeletons, one folder
#   ntu/NTU_RGBD_samples_with_missing_skeletons.txt
#   ntu/NTU_RGBD120_samples_with_missing_skeletons.txt
#   pku1/PKU_Skeleton_Renew/  pku1/Train_Label_PKU_final/  pku1/cross-subject.txt
#   pku2/skeleton/  pku2/label/  pku2/cross-subject.txt        (transfer target)
# Stores go to DATA_DIR/stores, runs to DATA_DIR/runs, the table to DATA_DIR/paper-table.md.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 [--dry-run] [--bench-rate SAMPLES_PER_S] DATA_DIR" >&2; exit 2; }
DRY=0
RATE=""
DATA=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --bench-rate) [ $# -ge 2 ] || usage; RATE=$2; shift ;;
    -h|--help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *) [ -z "$DATA" ] || usage; DATA=$1 ;;
  esac
  shift
done
[ -n "$DATA" ] || usage
if [ -n "$RATE" ] && ! [[ "$RATE" =~ ^[0-9]+([.][0-9]+)?$ && "$RATE" != 0 ]]; then
  echo "--bench-rate: expected a positive number of samples/s, got '$RATE'" >&2
  exit 2
fi
PSTL=${PSTL:-target/release/pstl}
STORES=$DATA/stores
RUNS=$DATA/runs

# benchmark  store  config  train-samples test-samples (official counts, approximate for PKU)
BENCHMARKS=(
  "ntu60_xsub   ntu60_xsub.h5   configs/ntu60_xsub_joint.toml   40091 16487"
  "ntu60_xview  ntu60_xview.h5  configs/ntu60_xview_joint.toml  37646 18932"
  "ntu120_xsub  ntu120_xsub.h5  configs/ntu120_xsub_joint.toml  63026 50919"
  "ntu120_xset  ntu120_xset.h5  configs/ntu120_xset_joint.toml  54468 59477"
  "pku1_xsub    pku1_xsub.h5    configs/pku1_joint.toml         18841 3247"
)
STREAMS=(joint motion bone)
PKU2_TRAIN=5332
PKU2_TEST=1613

step() { # print the command; run it unless this is a dry run
  echo "+ $*"
  [ "$DRY" = 1 ] || "$@"
}
have() { [ -e "$1" ] && { echo "= $1 exists, skipped"; true; }; }

if [ "$DRY" = 0 ]; then
  [ -x "$PSTL" ] || { echo "$PSTL missing: run 'make build' first" >&2; exit 1; }
  mkdir -p "$STORES" "$RUNS"
fi

echo "== 1. prepare the stores"
NTU=$DATA/ntu
for spec in "ntu60 xsub" "ntu60 xview" "ntu120 xsub" "ntu120 xset"; do
  set -- $spec
  ignore=$NTU/NTU_RGBD_samples_with_missing_skeletons.txt
  [ "$1" = ntu120 ] && ignore=$NTU/NTU_RGBD120_samples_with_missing_skeletons.txt
  have "$STORES/$1_$2.h5" || step "$PSTL" prepare ntu --raw "$NTU/nturgb+d_skeletons" \
    --dataset "$1" --benchmark "$2" --ignore "$ignore" --out "$STORES/$1_$2.h5"
done
for part in 1 2; do
  P=$DATA/pku$part
  skel=$P/PKU_Skeleton_Renew labels=$P/Train_Label_PKU_final
  [ "$part" = 2 ] && skel=$P/skeleton labels=$P/label
  have "$STORES/pku${part}_xsub.h5" || step "$PSTL" prepare pku --part "$part" \
    --skeletons "$skel" --labels "$labels" --split "$P/cross-subject.txt" \
    --out "$STORES/pku${part}_xsub.h5"
done

echo "== 2. pretrain every stream, 3. every protocol"
for b in "${BENCHMARKS[@]}"; do
  read -r name store cfg _ _ <<<"$b"
  for s in "${STREAMS[@]}"; do
    run=${name}_$s
    common=(--config "$cfg" --set "run.name=\"$run\"" --set "run.dir=\"$RUNS\""
            --set "data.path=\"$STORES/$store\"" --set "data.stream=\"$s\"")
    enc=$RUNS/$run/encoder.safetensors
    step "$PSTL" pretrain "${common[@]}"
    protocols=(linear finetune)
    [ "$s" = joint ] && protocols+=(knn semi)
    for p in "${protocols[@]}"; do
      have "$RUNS/$run/eval-$p/results.json" || step "$PSTL" eval "$p" "${common[@]}" --checkpoint "$enc"
    done
    if [ "$s" = joint ]; then
      have "$RUNS/$run/eval-robust/results.json" || step "$PSTL" eval robust "${common[@]}" \
        --checkpoint "$enc" --classifier "$RUNS/$run/eval-linear/classifier.safetensors" \
        --parts left_arm,right_arm --parts left_leg,right_leg
    fi
  done
  for p in linear finetune; do
    # eval.ensemble_mode / eval.ensemble_weights of the config: AimCLR's logits, 0.6/0.4/0.6.
    out=$RUNS/${name}_ensemble-$p
    have "$out/results.json" || step "$PSTL" eval ensemble --config "$cfg" \
      --set "data.path=\"$STORES/$store\"" --out "$out" --scores \
      "$RUNS/${name}_joint/eval-$p/scores.npy" "$RUNS/${name}_motion/eval-$p/scores.npy" \
      "$RUNS/${name}_bone/eval-$p/scores.npy"
  done
done
have "$RUNS/transfer_ntu120_to_pku2/eval-transfer/results.json" || step "$PSTL" eval transfer \
  --config configs/transfer_ntu120_to_pku2.toml --set "run.dir=\"$RUNS\"" \
  --set "data.path=\"$STORES/pku2_xsub.h5\"" --checkpoint "$RUNS/ntu120_xsub_joint/encoder.safetensors"

echo "== 4. report"
step "$PSTL" report "$RUNS" --out "$DATA/paper-table.md"

echo "== estimated GPU hours (at the throughput of the device pstl bench runs on)"
if [ -z "$RATE" ]; then
  [ -x "$PSTL" ] || { echo "$PSTL missing: build it, or pass --bench-rate" >&2; exit 1; }
  echo "+ $PSTL bench --config configs/ntu60_xsub_joint.toml --steps 20"
  line=$("$PSTL" bench --config configs/ntu60_xsub_joint.toml --steps 20 | tail -n 1)
  echo "$line"
  RATE=$(sed -n 's/.* \([0-9.]*\) samples\/s.*/\1/p' <<<"$line")
  [ -n "$RATE" ] || { echo "could not read samples/s from pstl bench" >&2; exit 1; }
fi
# Pretraining: 150 epochs x 3 streams at RATE samples/s (3 views, projector 6144).
# A fine-tune sample (one view, no projector) is counted as 1/3 of a pretraining one,
# a test forward pass as 1/9; 150 fine-tune epochs (plus 1% + 10% semi-supervised on
# joint) each with a test pass; linear, k-NN, robust and ensembles are forward passes.
{
  for b in "${BENCHMARKS[@]}"; do
    read -r name _ _ ntrain ntest <<<"$b"
    echo "$name $ntrain $ntest"
  done
  echo "transfer_pku2 $PKU2_TRAIN $PKU2_TEST"
} | awk -v r="$RATE" '
  function h(samples) { return samples / r / 3600 }
  {
    name = $1; tr = $2; te = $3
    if (name == "transfer_pku2") {
      pre = 0
      down = h(150 * tr / 3 + 150 * te / 9) + h((tr + te) / 9)
    } else {
      pre = 3 * h(150 * tr)
      ft = h(150 * tr / 3 + 150 * te / 9)
      semi = h(150 * 0.11 * tr / 3 + 2 * 150 * te / 9)
      fwd = h((tr + te) / 9) * 4 + h(56 * te / 9)
      down = 3 * ft + semi + fwd
    }
    printf "%-14s pretrain %8.1f h   downstream %8.1f h\n", name, pre, down
    total += pre + down
  }
  END { printf "total          %.1f hours at %s samples/s (pretraining throughput)\n", total, r }'
