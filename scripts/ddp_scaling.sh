#!/usr/bin/env bash
# Data-parallel scaling on one machine: W ranks x 1 thread (Gloo on localhost) against
# one process x THREADS threads, at the official size (configs/ntu60_xsub_joint.toml:
# batch 128, projector 6144, the 1/4-width ST-GCN) on a synthetic NTU-sized store of
# SAMPLES training samples, one epoch each, interleaved round by round so that every
# variant sees the same machine load. Throughput is taken from metrics.csv between the
# first and the last step (start-up and the first step left out).
# Prints the median samples/s of each variant and its ratio to the single process.
# Env: WORLDS ("2 4"), ROUNDS (2), SAMPLES (512), THREADS (2), CONFIG, BIN
#      (target/release/pstl), BEFORE (a second binary, e.g. an older build, measured
#      the same way in the same rounds), SET ("k=v ..." extra overrides).
set -euo pipefail
WORLDS=${WORLDS:-2 4}
ROUNDS=${ROUNDS:-2}
SAMPLES=${SAMPLES:-512}
THREADS=${THREADS:-2}
CONFIG=${CONFIG:-configs/ntu60_xsub_joint.toml}
BIN=${BIN:-target/release/pstl}
BEFORE=${BEFORE:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
classes=8
"$BIN" synth --out "$tmp/s.h5" --classes $classes --train-per-class $((SAMPLES / classes)) \
  --test-per-class 1 >/dev/null
sets=(--set "data.path=\"$tmp/s.h5\"" --set "run.dir=\"$tmp/runs\"" --set pretrain.epochs=1
  --set pretrain.warmup_epochs=0 --set pretrain.log_every=1)
for kv in ${SET:-}; do sets+=(--set "$kv"); done

# samples/s between the first and the last logged step of run $1.
rate() {
  awk -F, 'NR == 2 {s0 = $2; t0 = $10} NR > 2 {s = $2; t = $10}
           END {if (s > s0) printf "%.3f", (s - s0) * B / (t - t0); else print "nan"}' \
    B="$(sed -n 's/^batch_size = //p' "$CONFIG")" "$tmp/runs/$1/metrics.csv"
}
one() { # bin name threads
  env -u RANK -u WORLD_SIZE "$1" pretrain -c "$CONFIG" --device cpu --threads "$3" "${sets[@]}" \
    --set "run.name=\"$2\"" >"$tmp/$2.log" 2>&1 || { cat "$tmp/$2.log" >&2; exit 1; }
}
ranks() { # bin name world
  local port=$((20000 + RANDOM % 20000)) r pids=()
  for r in $(seq 1 $(($3 - 1))); do
    RANK=$r WORLD_SIZE=$3 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$1" pretrain -c "$CONFIG" \
      --device cpu --threads 1 "${sets[@]}" --set "run.name=\"$2\"" >"$tmp/$2.$r.log" 2>&1 &
    pids+=($!)
  done
  RANK=0 WORLD_SIZE=$3 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$1" pretrain -c "$CONFIG" \
    --device cpu --threads 1 "${sets[@]}" --set "run.name=\"$2\"" >"$tmp/$2.log" 2>&1 \
    || { cat "$tmp/$2.log" >&2; exit 1; }
  wait "${pids[@]}"
  grep -h "per step" "$tmp/$2.log" | sed 's/^.*INFO //; s/ grad_mb_per_step.*//' | head -1 >&2 || true
}
declare -A got
variants=("1x${THREADS}")
for w in $WORLDS; do variants+=("${w}x1"); [ -n "$BEFORE" ] && variants+=("before-${w}x1"); done
for r in $(seq "$ROUNDS"); do
  for v in "${variants[@]}"; do
    name="$v-$r"
    case $v in
      1x*) one "$BIN" "$name" "$THREADS" ;;
      before-*) w=${v#before-}; ranks "$BEFORE" "$name" "${w%x1}" ;;
      *) ranks "$BIN" "$name" "${v%x1}" ;;
    esac
    got[$v]="${got[$v]:-} $(rate "$name")"
    echo "round $r: $v $(rate "$name") samples/s"
  done
done
median() { printf '%s\n' $1 | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
base=$(median "${got[1x${THREADS}]}")
echo "== medians over $ROUNDS round(s), $SAMPLES samples, $CONFIG"
for v in "${variants[@]}"; do
  m=$(median "${got[$v]}")
  awk -v v="$v" -v m="$m" -v b="$base" 'BEGIN {printf "%-12s %8.3f samples/s  %.2fx\n", v, m, m / b}'
done
