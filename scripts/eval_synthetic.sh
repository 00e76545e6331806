#!/usr/bin/env bash
# Every downstream protocol on the synthetic default (after `make pretrain`), for the
# PSTL-pretrained encoder and for a randomly initialised one; prints a markdown table.
# Shortened schedules for a 2-core CPU; override with EXTRA="--set eval.finetune_epochs=..."
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/pstl
CFG=configs/synthetic.toml
ENC=runs/synthetic/encoder.safetensors
EXTRA=${EXTRA:-"--set eval.finetune_epochs=10 --set eval.robust_draws=2"}
[ -f "$ENC" ] || { echo "run 'make pretrain' first ($ENC missing)" >&2; exit 1; }
for init in pstl random; do
  ck=(); [ "$init" = pstl ] && ck=(--checkpoint "$ENC")
  out=runs/synthetic/table-$init
  for p in linear knn finetune semi; do
    # shellcheck disable=SC2086
    $BIN eval "$p" --config "$CFG" "${ck[@]}" $EXTRA --out "$out/$p"
  done
  # shellcheck disable=SC2086
  $BIN eval robust --config "$CFG" "${ck[@]}" $EXTRA --classifier "$out/linear/classifier.safetensors" --out "$out/robust"
done
python3 - <<'PY'
import json
def r(init, p):
    return json.load(open(f"runs/synthetic/table-{init}/{p}/results.json"))
rows = [
    ("linear top-1 (last / best)", lambda i: f"{r(i,'linear')['top1_last']:.1f} / {r(i,'linear')['top1_best']:.1f}"),
    ("k-NN top-1 (k=1 / 10 / 20)", lambda i: " / ".join(f"{r(i,'knn')[f'top1_k{k}']:.1f}" for k in (1, 10, 20))),
    ("fine-tune top-1 (best)", lambda i: f"{r(i,'finetune')['top1_best']:.1f}"),
    ("semi 1% / 10% top-1 (best)", lambda i: f"{r(i,'semi')['semi1']['top1_best']:.1f} / {r(i,'semi')['semi10']['top1_best']:.1f}"),
    ("robust: linear probe, no joints missing", lambda i: f"{r(i,'robust')['top1_full']:.1f}"),
    ("robust: mean over the 5 body parts removed", lambda i: f"{sum(r(i,'robust')['parts'].values())/5:.1f}"),
    ("robust: 5 / 10 random joints removed", lambda i: f"{r(i,'robust')['random_k']['5']:.1f} / {r(i,'robust')['random_k']['10']:.1f}"),
]
print("| protocol (synthetic test split, %) | PSTL-pretrained | random init |")
print("|---|---|---|")
for name, f in rows:
    print(f"| {name} | {f('pstl')} | {f('random')} |")
PY
