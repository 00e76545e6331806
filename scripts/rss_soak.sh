#!/usr/bin/env bash
# Resident memory over a long run: `pstl pretrain` on the synthetic default
# (configs/synthetic.toml, CPU) for STEPS optimiser steps (default 500), VmRSS sampled
# every second with the step reached (metrics.csv). Prints the samples as CSV
# (seconds,step,rss_mib) to OUT (default rss.csv) and a summary: RSS after warm-up
# (step 50), at the middle and at the end, the peak, and the growth per 100 steps
# after warm-up (a least-squares slope). Outside `make test`.
# Usage: scripts/rss_soak.sh [STEPS] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-500}
OUT=${2:-rss.csv}
BIN=${BIN:-target/release/pstl}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# 1,000 train samples at batch 32: 32 steps per epoch.
epochs=$(( (STEPS + 31) / 32 ))
"$BIN" pretrain --config configs/synthetic.toml --device cpu -q \
  --set "data.path=\"$work/synthetic.h5\"" --set "run.dir=\"$work/runs\"" \
  --set "pretrain.epochs=$epochs" --set eval.after_pretrain=false \
  --set pretrain.log_every=1 >/dev/null 2>"$work/stderr" &
pid=$!
metrics="$work/runs/synthetic/metrics.csv"
echo "seconds,step,rss_mib" >"$OUT"
t0=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  step=$(tail -n 1 "$metrics" 2>/dev/null | cut -d, -f2 | grep -E '^[0-9]+$' || echo 0)
  [ -n "$rss" ] && echo "$(( $(date +%s) - t0 )),$step,$(( rss / 1024 ))" >>"$OUT"
  [ "$step" -ge "$STEPS" ] && { kill -TERM "$pid"; wait "$pid" || true; break; }
  sleep 1
done
python3 - "$OUT" <<'PY'
import csv, sys
rows = [(int(r["step"]), int(r["rss_mib"])) for r in csv.DictReader(open(sys.argv[1]))]
def at(s):
    return next((m for st, m in rows if st >= s), rows[-1][1])
last = rows[-1][0]
tail = [(s, m) for s, m in rows if s >= 50]
n = len(tail)
mx = sum(s for s, _ in tail) / n; my = sum(m for _, m in tail) / n
var = sum((s - mx) ** 2 for s, _ in tail) or 1
slope = sum((s - mx) * (m - my) for s, m in tail) / var
print(f"steps {last}: RSS {at(1)} MiB at step 1, {at(50)} at step 50, {at(last // 2)} at step {last // 2}, "
      f"{rows[-1][1]} at step {last}; peak {max(m for _, m in rows)} MiB; "
      f"after step 50: min {min(m for _, m in tail)}, max {max(m for _, m in tail)}, slope {100 * slope:+.2f} MiB per 100 steps")
PY
