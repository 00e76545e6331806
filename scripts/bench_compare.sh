#!/usr/bin/env bash
# `make bench-compare`: pstl's pretraining step against the authors' step in PyTorch
# (benches/pytorch_step.py) on the same weights, batch, threads and device.
#  1. equality: one step dumped by `pstl bench --dump` (dropout 0, fp32) is recomputed
#     by PyTorch; the loss before and after one Adam update must agree to 1e-4.
#  2. speed: ROUNDS rounds of A (pstl) then B (PyTorch), STEPS timed steps each,
#     interleaved so both see the same machine load; prints the ratio of the medians.
# Env: CONFIG, STEPS (3), ROUNDS (2), WARMUP (1; untimed steps before each timed run:
#      give 20 or more on CUDA, where cuDNN tunes each new CSM shape first),
#      THREADS (0 = all cores), DEVICE (cpu),
#      PRECISION (pstl's, fp32), PY_PRECISION (PyTorch's, fp32), SET (extra --set k=v),
#      CHECK (1; 0 skips the equality check),
#      RTOL_AFTER (1e-3: the loss after one Adam step, where rounding-level gradients
#      move weights by a full lr; a CUDA dump checked by PyTorch on CPU measured 1.06e-3
#      on an H200, so use 2e-3 there).
set -euo pipefail
CONFIG=${CONFIG:-configs/ntu60_xsub_joint.toml}
STEPS=${STEPS:-3}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-1}
THREADS=${THREADS:-0}
DEVICE=${DEVICE:-cpu}
PRECISION=${PRECISION:-fp32}
PY_PRECISION=${PY_PRECISION:-fp32}
RTOL_AFTER=${RTOL_AFTER:-1e-3}
CHECK=${CHECK:-1}
BIN=${BIN:-target/release/pstl}
PY=${PY:-.venv/bin/python}
sets=()
for kv in ${SET:-}; do sets+=(--set "$kv"); done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--config "$CONFIG" --device "$DEVICE" --threads "$THREADS" "${sets[@]}")

# A mismatch is reported at the end, after the timing (exit 1).
check_rc=0
if [ "$CHECK" = 1 ]; then
  echo "== equality (fp32, dropout 0, one step on the same views and weights)"
  "$BIN" bench "${common[@]}" --set model.dropout=0 --steps 0 --dump "$tmp/check.safetensors"
  "$PY" benches/pytorch_step.py --check "$tmp/check.safetensors" --threads "$THREADS" \
    --rtol-after "$RTOL_AFTER" || check_rc=$?
fi

echo "== speed: $ROUNDS x (pstl $PRECISION, PyTorch $PY_PRECISION), $STEPS steps each, $CONFIG"
"$BIN" bench "${common[@]}" --steps 0 --dump "$tmp/weights.safetensors" >/dev/null
a=(); b=()
for r in $(seq "$ROUNDS"); do
  out=$("$BIN" bench "${common[@]}" --set "pretrain.precision=\"$PRECISION\"" --steps "$STEPS" --warmup "$WARMUP")
  echo "$out"
  a+=("$(sed -n 's/^RESULT samples_per_s=//p' <<<"$out")")
  out=$("$PY" benches/pytorch_step.py --weights "$tmp/weights.safetensors" --steps "$STEPS" --warmup "$WARMUP" \
        --threads "$THREADS" --device "$DEVICE" --precision "$PY_PRECISION")
  echo "$out"
  b+=("$(sed -n 's/^RESULT samples_per_s=//p' <<<"$out")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
ma=$(median "${a[@]}"); mb=$(median "${b[@]}")
echo "== pstl ($PRECISION) ${a[*]} samples/s; PyTorch ($PY_PRECISION) ${b[*]} samples/s"
awk -v a="$ma" -v b="$mb" 'BEGIN {printf "== median pstl %.3f / PyTorch %.3f samples/s = %.3fx\n", a, b, a / b}'
if [ "$check_rc" -ne 0 ]; then
  echo "== the equality check FAILED (above)"
  exit 1
fi
