#!/usr/bin/env bash
# Data-parallel fault tests (tests/it/faults.rs: SIGKILL of one rank at a random step
# then a relaunch, SIGTERM to one rank, a failed checkpoint write on rank 0), run
# RUNS times (default 20) with a fresh random step each; outside `make test`.
# Usage: scripts/fault_soak.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
export LIBTORCH_USE_PYTORCH=1 VIRTUAL_ENV=$PWD/.venv PATH=$PWD/.venv/bin:$PATH
export HDF5_DIR=${HDF5_DIR:-/usr/lib/x86_64-linux-gnu/hdf5/serial}
cargo test --release --locked --no-run -q
pass=0
for i in $(seq 1 "$RUNS"); do
  log=$(mktemp)
  if cargo test --release --locked -q -- --test-threads=2 --nocapture faults:: >"$log" 2>&1; then
    pass=$((pass + 1))
    echo "run $i/$RUNS: ok ($(grep -o 'fault at step [0-9]*' "$log" | tr '\n' ' '))"
  else
    echo "run $i/$RUNS: FAILED"; grep -E "panicked|fault at step" "$log" || true
    cp "$log" "fault_soak_failure_$i.log"
  fi
  rm -f "$log"
done
echo "fault soak: $pass of $RUNS runs passed"
[ "$pass" -eq "$RUNS" ]
