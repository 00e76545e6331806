#!/usr/bin/env bash
# The noise floor behind the data-parallel equality test (tests/it/ddp.rs): for SEEDS
# seeds, the tiny exact setting of that test (128 samples, batch 128, 2 epochs = 2 Adam
# steps, dropout 0, sync_bn) as one process on 1 thread, on 2 threads, and as 2 and 4
# ranks x 1 thread; prints, per seed, the largest difference of the final weights and
# of the gradients (Adam's first moment) relative to each tensor's scale, against the
# 1-thread run (the zero-gradient biases and the running means behind them left out).
# Env: SEEDS (5), BIN (target/release/pstl), PY (.venv/bin/python).
set -euo pipefail
SEEDS=${SEEDS:-5}
BIN=${BIN:-target/release/pstl}
PY=${PY:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIN" synth --out "$tmp/s.h5" --classes 4 --train-per-class 32 --test-per-class 2 >/dev/null
run() { # name world threads seed
  local args=(pretrain --device cpu --threads "$3" --set "run.name=\"$1\"" --set "run.dir=\"$tmp/runs\""
    --set "data.path=\"$tmp/s.h5\"" --set model.base_channels=4 --set model.feature_dim=32
    --set model.projector_dim=64 --set pretrain.warmup_epochs=0 --set pretrain.batch_size=128
    --set pretrain.epochs=2 --set model.dropout=0.0 --set pretrain.sync_bn=true --set "run.seed=$4")
  if [ "$2" = 0 ]; then env -u RANK -u WORLD_SIZE "$BIN" "${args[@]}" >"$tmp/$1.log" 2>&1; return; fi
  local port=$((20000 + RANDOM % 20000)) r
  for r in $(seq 1 $(($2 - 1))); do
    RANK=$r WORLD_SIZE=$2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$BIN" "${args[@]}" >"$tmp/$1.$r.log" 2>&1 &
  done
  RANK=0 WORLD_SIZE=$2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$BIN" "${args[@]}" >"$tmp/$1.log" 2>&1
  wait
}
for s in $(seq "$SEEDS"); do
  run "t1-$s" 0 1 "$s"; run "t2-$s" 0 2 "$s"; run "r2-$s" 2 1 "$s"; run "r4-$s" 4 1 "$s"
done
"$PY" - "$tmp/runs" "$SEEDS" <<'PYEOF'
import sys, torch
from safetensors.torch import load_file
root, seeds = sys.argv[1], int(sys.argv[2])
skip = ("tcn.2.bias", "residual.0.bias", "tcn.3.running_mean", "residual.1.running_mean")
def rel(a, b, grads):
    out = 0.0
    for k, v in a.items():
        if v.dtype != torch.float32 or k.endswith(skip): continue
        if k.startswith("optimizer.") != grads or (grads and not k.startswith("optimizer.exp_avg.")): continue
        out = max(out, (v - b[k]).abs().max().item() / (v.abs().max().item() or 1.0))
    return out
print("seed  weights: 2 threads  2 ranks  4 ranks | gradients: 2 threads  2 ranks  4 ranks")
for s in range(1, seeds + 1):
    ck = {n: load_file(f"{root}/{n}-{s}/checkpoint.safetensors") for n in ("t1", "t2", "r2", "r4")}
    w = [rel(ck["t1"], ck[n], False) for n in ("t2", "r2", "r4")]
    g = [rel(ck["t1"], ck[n], True) for n in ("t2", "r2", "r4")]
    print(f"{s:4d}  " + "  ".join(f"{x:9.2e}" for x in w) + " | " + "  ".join(f"{x:9.2e}" for x in g))
PYEOF
