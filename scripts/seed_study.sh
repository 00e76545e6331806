#!/usr/bin/env bash
# Seed study (docs/fidelity.md, "Training outcome: pstl against the authors' loop"): pstl's
# pretraining and the authors' loop in PyTorch (benches/pytorch_train.py) on the same
# store, sizes and schedule, each encoder scored by the same `pstl eval linear` with the
# same seed. Prints one line per seed and implementation, then mean and sample standard
# deviation of top-1 (last epoch and best epoch) for both.
# Env: SEEDS ("1 2 3 4 5"), CONFIG (configs/synthetic.toml), DEVICE (cpu), THREADS (0),
#      EPOCHS (6), STORE (data/synthetic.h5: the config's data.path), BIN
#      (target/release/pstl), PY (.venv/bin/python), WORK (a temporary folder, kept when
#      given), PY_ARGS (more arguments of pytorch_train.py, whose defaults are the
#      synthetic config's), SET (more --set k=v for the pstl commands).
set -euo pipefail
SEEDS=${SEEDS:-1 2 3 4 5}
CONFIG=${CONFIG:-configs/synthetic.toml}
DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-0}
EPOCHS=${EPOCHS:-6}
STORE=${STORE:-data/synthetic.h5}
# shellcheck source=scripts/study_env.sh
source "$(dirname "$0")/study_env.sh"
common=(-c "$CONFIG" --device "$DEVICE" --threads "$THREADS" --runs-dir "$WORK/runs"
        --set "pretrain.epochs=$EPOCHS" "${sets[@]}")
top1() { "$PY" -c 'import json,sys; v=json.load(sys.stdin); print(v["top1_last"], v["top1_best"])'; }

# The network's shapes for the PyTorch loop (pstl's pretraining builds the store first).
"$BIN" -q bench "${common[@]}" --steps 0 --dump "$WORK/shape.safetensors" >/dev/null

rows=()
for s in $SEEDS; do
  t0=$(date +%s)
  "$BIN" -q pretrain "${common[@]}" --seed "$s" --set "run.name=\"pstl_s$s\"" \
    --set eval.after_pretrain=false --fresh
  r=$("$BIN" -q --json eval linear "${common[@]}" --seed "$s" --out "$WORK/eval_pstl_s$s" \
    --checkpoint "$WORK/runs/pstl_s$s/encoder.safetensors" | top1)
  t1=$(date +%s)
  echo "seed $s pstl    top1_last top1_best: $r ($((t1 - t0)) s)"
  rows+=("pstl $r")
  # shellcheck disable=SC2086
  "$PY" benches/pytorch_train.py --shape "$WORK/shape.safetensors" --store "$STORE" \
    --seed "$s" --device "$DEVICE" --threads "$THREADS" --epochs "$EPOCHS" \
    --out "$WORK/torch_s$s.safetensors" ${PY_ARGS:-} | tail -1
  r=$("$BIN" -q --json eval linear "${common[@]}" --seed "$s" --out "$WORK/eval_torch_s$s" \
    --checkpoint "$WORK/torch_s$s.safetensors" | top1)
  t2=$(date +%s)
  echo "seed $s pytorch top1_last top1_best: $r ($((t2 - t1)) s)"
  rows+=("pytorch $r")
done
printf '%s\n' "${rows[@]}" | "$PY" -c '
import statistics as st, sys
by = {}
for line in sys.stdin:
    impl, last, best = line.split()
    by.setdefault(impl, []).append((float(last), float(best)))
for impl, v in by.items():
    last = [a for a, _ in v]; best = [b for _, b in v]
    sd = lambda x: st.stdev(x) if len(x) > 1 else float("nan")
    each = " ".join(f"{a:.2f}" for a in last)
    print(f"== {impl}: {len(v)} seeds, linear top-1 last {st.mean(last):.2f} +- {sd(last):.2f}, "
          f"best {st.mean(best):.2f} +- {sd(best):.2f} (last, per seed: {each})")
'
