# Shared by scripts/seed_study.sh and scripts/precision_study.sh (sourced): the binary,
# the venv's Python, a work folder (temporary unless WORK is given) and the extra
# `--set k=v` arguments from SET, as the array `sets`.
BIN=${BIN:-target/release/pstl}
PY=${PY:-.venv/bin/python}
if [ -z "${WORK:-}" ]; then
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
sets=()
for kv in ${SET:-}; do sets+=(--set "$kv"); done
