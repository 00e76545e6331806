#!/usr/bin/env bash
# The GPU check: everything a lent GPU machine should tell us, as one command that fits
# in 8 minutes and writes all it sees to one folder.
#
#   bash gpu-check.sh OUT_DIR            # from `make gpu-bundle`'s folder, or scripts/ here
#   DRY_RUN=1 bash scripts/gpu-check.sh OUT_DIR   # CPU, tiny sizes (`make test` runs this)
#
# Sections (each under its own time limit; a failure is recorded and the next runs):
#   env      nvidia-smi, the binary's libtorch, Python's torch
#   nccl     a 1-rank NCCL pretraining (torchrun's variables): must exit 0
#   ab-fp32  `make bench-compare` on CUDA, fp32 both sides: equality check, then A B A B
#   ab-bf16  the same timing with bf16 autocast on both sides
#   steps    pstl's fp32, bf16 and fp16 steps, each with the allocator's peak
#   phases   the step by phase: views, each encoder block, projector, losses, backward, Adam
#   kernels  both steps' CUDA time by kernel family (Kineto; torch.profiler)
#   epoch    one epoch of a 40,020-sample NTU-60-sized synthetic store through the loader
# Then summary.md: one row per section (status, seconds, the headline numbers).
# Env: BIN (pstl; default: ./pstl beside this script, else target/release/pstl),
#      PY (Python with torch: /opt/torch/.venv/bin/python if there, else python3),
#      DEVICE (cuda), THREADS (0 = all cores; 1 in a dry run), STEPS (20), ROUNDS (2),
#      WARMUP (30: cuDNN tunes on first sight each joint count CSM leaves, 17 to 20),
#      EPOCH_CLASSES (60), EPOCH_PER_CLASS (667), ONLY ("nccl steps": only these sections).
set -uo pipefail
dry=${DRY_RUN:-0}
[ "${1:-}" = --dry-run ] && { dry=1; shift; }
if [ $# -ne 1 ]; then
  echo "usage: [DRY_RUN=1] $0 [--dry-run] OUT_DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$here/benches/pytorch_step.py" ]; then root=$here; else root=$(cd "$here/.." && pwd); fi
mkdir -p "$1" || exit 2
out=$(cd "$1" && pwd)
cd "$root"
if [ -z "${BIN:-}" ]; then
  if [ -x "$root/pstl" ]; then BIN=$root/pstl; else BIN=$root/target/release/pstl; fi
fi
# The lent machine's torch lives in /opt/torch/.venv; elsewhere python3.
if [ -z "${PY:-}" ]; then
  if [ -x /opt/torch/.venv/bin/python ]; then PY=/opt/torch/.venv/bin/python; else PY=python3; fi
fi
# The bundle carries safetensors for a Python that lacks it (appended: the site's wins).
[ -d "$root/py" ] && export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$root/py
work=$(mktemp -d "${TMPDIR:-/tmp}/pstl-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
export BIN PY out work dry root

if [ "$dry" = 1 ]; then
  # One thread: spare cores are few where tests run, and libtorch's spinning threads
  # slow down tenfold on a loaded machine.
  export DEVICE=cpu WARMUP=${WARMUP:-0} STEPS=${STEPS:-1} ROUNDS=${ROUNDS:-1} THREADS=${THREADS:-1}
  export EPOCH_CLASSES=${EPOCH_CLASSES:-4} EPOCH_PER_CLASS=${EPOCH_PER_CLASS:-8}
  # A tiny model (CPU, seconds); the official one otherwise.
  export TINY="model.base_channels=4 model.feature_dim=32 model.projector_dim=64 pretrain.batch_size=8"
  # Generous limits: a loaded test machine must not turn a pass into a timeout.
  budget=(env=240 nccl=240 ab-fp32=240 ab-bf16=240 steps=240 phases=240 kernels=240 epoch=240)
else
  export DEVICE=${DEVICE:-cuda} WARMUP=${WARMUP:-30} STEPS=${STEPS:-20} ROUNDS=${ROUNDS:-2} THREADS=${THREADS:-0}
  export EPOCH_CLASSES=${EPOCH_CLASSES:-60} EPOCH_PER_CLASS=${EPOCH_PER_CLASS:-667}
  export TINY=""
  # Seconds per section: 460 in all (7 min 40 s), under 8 minutes with the start-up.
  budget=(env=15 nccl=45 ab-fp32=100 ab-bf16=60 steps=50 phases=30 kernels=40 epoch=120)
fi
export CONFIG=configs/ntu60_xsub_joint.toml
sets() { for kv in $TINY "$@"; do printf -- '--set\n%s\n' "$kv"; done; }
export -f sets

sec_env() {
  date -u +%FT%TZ
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi || return 1
  elif [ "$dry" = 1 ]; then
    echo "nvidia-smi: not found (dry run)"
  else
    echo "nvidia-smi: not found"; return 1
  fi
  "$BIN" --version
  readelf -d "$BIN" 2>/dev/null | grep -E 'R(UN)?PATH' || true
  ldd "$BIN" | grep -E 'torch|hdf5|not found' || true
  ! ldd "$BIN" | grep 'not found' >/dev/null || { echo "libraries missing (above)"; return 1; }
  "$PY" -c 'import torch, safetensors; print("python torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
}

sec_nccl() {
  "$BIN" synth --out "$work/nccl.h5" --classes 4 --train-per-class 16 --test-per-class 2 || return 1
  mapfile -t s < <(sets "data.path=\"$work/nccl.h5\"" "run.dir=\"$work/runs\"" 'run.name="nccl"' \
    "run.device=\"$DEVICE\"" pretrain.epochs=1 pretrain.warmup_epochs=0 pretrain.batch_size=16 \
    eval.after_pretrain=false)
  RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29531 \
    "$BIN" pretrain --config configs/synthetic.toml --threads "$THREADS" "${s[@]}"
  local rc=$?
  echo "RESULT exit=$rc"
  return $rc
}

ab() { # precision (pstl = PyTorch), equality check 0/1
  local p=$1
  [ "$dry" = 1 ] && p=fp32
  SET="$TINY" PRECISION=$p PY_PRECISION=$p CHECK=$2 RTOL_AFTER=2e-3 \
    bash scripts/bench_compare.sh
}
sec_ab_fp32() { ab fp32 1; }
sec_ab_bf16() { ab bf16 0; }

sec_steps() {
  local rc=0 p
  for p in fp32 bf16 fp16; do
    if [ "$p" = fp16 ] && [ "$DEVICE" = cpu ]; then echo "== fp16: skipped (needs CUDA)"; continue; fi
    echo "== $p"
    mapfile -t s < <(sets "pretrain.precision=\"$p\"")
    "$BIN" bench --config "$CONFIG" --device "$DEVICE" --threads "$THREADS" "${s[@]}" --steps "$STEPS" --warmup "$WARMUP" \
      | sed "s/^RESULT samples_per_s=/RESULT ${p}_samples_per_s=/" || rc=1
  done
  return $rc
}

sec_phases() {
  local rc=0 p
  for p in fp32 bf16; do
    echo "== $p"
    mapfile -t s < <(sets "pretrain.precision=\"$p\"")
    "$BIN" bench --config "$CONFIG" --device "$DEVICE" --threads "$THREADS" "${s[@]}" --phases \
      --steps "$(( STEPS < 10 ? STEPS : 10 ))" --warmup "$WARMUP" || rc=1
  done
  return $rc
}

sec_kernels() {
  local rc=0 n=$(( STEPS < 5 ? STEPS : 5 ))
  mapfile -t s < <(sets)
  echo "== pstl (Kineto through the bridge)"
  "$BIN" bench --config "$CONFIG" --device "$DEVICE" --threads "$THREADS" "${s[@]}" --kernels --steps "$n" --warmup "$WARMUP" \
    | sed 's/^KERNELS total/KERNELS total pstl/' || rc=1
  echo "== PyTorch (torch.profiler)"
  "$BIN" bench --config "$CONFIG" --device "$DEVICE" --threads "$THREADS" "${s[@]}" --steps 0 --dump "$work/w.safetensors" >/dev/null || return 1
  "$PY" benches/pytorch_step.py --weights "$work/w.safetensors" --device "$DEVICE" --threads "$THREADS" \
    --steps "$n" --warmup "$WARMUP" --profile | sed 's/^KERNELS total/KERNELS total PyTorch/' || rc=1
  return $rc
}

sec_epoch() {
  local t0=$SECONDS
  "$BIN" synth --out "$work/epoch.h5" --classes "$EPOCH_CLASSES" \
    --train-per-class "$EPOCH_PER_CLASS" --test-per-class 1 || return 1
  echo "synth: $((SECONDS - t0)) s, $(du -h "$work/epoch.h5" | cut -f1)"
  mapfile -t s < <(sets "data.path=\"$work/epoch.h5\"")
  "$BIN" bench --config "$CONFIG" --device "$DEVICE" --threads "$THREADS" "${s[@]}" --epoch --warmup "$WARMUP"
}
export -f sec_env sec_nccl ab sec_ab_fp32 sec_ab_bf16 sec_steps sec_phases sec_kernels sec_epoch

echo "| section | status | seconds | numbers |" >"$out/summary.md"
echo "|---|---|---|---|" >>"$out/summary.md"
failed=0
for entry in "${budget[@]}"; do
  name=${entry%%=*}
  limit=${entry#*=}
  if [ -n "${ONLY:-}" ] && ! grep -qw -- "$name" <<<"$ONLY"; then continue; fi
  log=$out/$name.log
  echo "== [$name] (limit ${limit} s) -> $log"
  t0=$(date +%s.%N)
  timeout -k 10 "$limit" bash -o pipefail -c "sec_${name//-/_}" >"$log" 2>&1
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}')
  case $rc in
    0) status=ok ;;
    124 | 137) status="TIMEOUT (${limit} s)"; failed=1 ;;
    *) status="FAIL (exit $rc)"; failed=1 ;;
  esac
  # Headline numbers: RESULT lines, the A/B ratio, the memory and epoch lines.
  nums=$(grep -hE '^RESULT |^== median|allocator peak|peak RSS|peak memory|waiting for the loader|equality check FAILED|^KERNELS total' "$log" \
    | sed -E 's/^bench: //; s/\|/\//g' | tr '\n' ';' | sed 's/;$//' | cut -c1-400)
  echo "| $name | $status | $secs | $nums |" >>"$out/summary.md"
  echo "   $status in ${secs} s"
done
echo
cat "$out/summary.md"
exit $failed
