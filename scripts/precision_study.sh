#!/usr/bin/env bash
# Precision study (docs/performance.md, "bf16 against fp32 in training"): for each seed, pstl pretrains once in fp32 and
# once in bf16 (`pretrain.precision`), the two side by side with THREADS threads each,
# and `pstl eval linear` scores both encoders with the same seed. Prints one line per
# seed and precision (linear top-1 of the last and best epoch, final pretraining loss,
# seconds), then mean and sample sd per precision and the difference of the means with
# its standard error.
# Env: SEEDS ("1 2 3"), CONFIG (configs/synthetic.toml), THREADS (1), BIN
#      (target/release/pstl), PY (.venv/bin/python), WORK (a temporary folder, kept when
#      given), SET (more --set k=v for every pstl command).
set -euo pipefail
SEEDS=${SEEDS:-1 2 3}
CONFIG=${CONFIG:-configs/synthetic.toml}
THREADS=${THREADS:-1}
# shellcheck source=scripts/study_env.sh
source "$(dirname "$0")/study_env.sh"
common=(-c "$CONFIG" --device cpu --threads "$THREADS" --runs-dir "$WORK/runs" "${sets[@]}")

# The store is built once, before the parallel runs would race to create it.
"$BIN" -q bench "${common[@]}" --steps 0 --dump "$WORK/shape.safetensors" >/dev/null

run() { # seed precision -> "$WORK/p_<precision>_s<seed>.txt"
  local s=$1 p=$2 name="${2}_s$1" t0 loss r
  t0=$(date +%s)
  loss=$("$BIN" -q --json pretrain "${common[@]}" --seed "$s" --fresh \
    --set "run.name=\"$name\"" --set "pretrain.precision=\"$p\"" --set eval.after_pretrain=false |
    "$PY" -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["final_loss"])')
  r=$("$BIN" -q --json eval linear "${common[@]}" --seed "$s" --out "$WORK/eval_$name" \
    --checkpoint "$WORK/runs/$name/encoder.safetensors" |
    "$PY" -c 'import json,sys; v=json.load(sys.stdin); print("%.2f %.2f" % (v["top1_last"], v["top1_best"]))')
  echo "$p $r $loss $(($(date +%s) - t0))" >"$WORK/p_$name.txt"
}

for s in $SEEDS; do
  run "$s" fp32 & a=$!
  run "$s" bf16 & b=$!
  wait "$a"; wait "$b"
  for p in fp32 bf16; do
    read -r _ last best loss secs <"$WORK/p_${p}_s$s.txt"
    echo "seed $s $p: linear top-1 last $last, best $best; final loss $loss; $secs s"
  done
done
cat "$WORK"/p_*.txt | "$PY" -c '
import statistics as st, sys
by = {}
for line in sys.stdin:
    p, last, best, loss, secs = line.split()
    by.setdefault(p, []).append((float(last), float(best), float(loss)))
sd = lambda x: st.stdev(x) if len(x) > 1 else float("nan")
for p in ("fp32", "bf16"):
    v = by[p]
    last, best, loss = ([r[i] for r in v] for i in range(3))
    print(f"== {p}: {len(v)} seeds, linear top-1 last {st.mean(last):.2f} +- {sd(last):.2f}, "
          f"best {st.mean(best):.2f} +- {sd(best):.2f}, final loss {st.mean(loss):.1f}")
a, b = ([r[0] for r in by[p]] for p in ("bf16", "fp32"))
se = (sd(a) ** 2 / len(a) + sd(b) ** 2 / len(b)) ** 0.5
print(f"== bf16 - fp32 (last): {st.mean(a) - st.mean(b):+.2f}, standard error {se:.2f}")
'
