#!/usr/bin/env bash
# Build (or test) pstl against an existing PyTorch of another minor version than the
# one tch pins (2.13): a cluster's site torch, say.
#
#   scripts/torch-compat.sh TORCH_DIR [CARGO_SUBCOMMAND [ARGS...]]    (default: build --release)
#   scripts/torch-compat.sh TORCH_DIR patch      (steps 1 and 2 only: what would be stubbed)
#   make build TORCH_DIR=/path/to/site-packages/torch
#
# TORCH_DIR is the `torch` package folder (with include/ and lib/). The script
#  1. copies the locked torch-sys from cargo's registry to $OUT/torch-sys (never into git),
#  2. syntax-checks its generated op wrappers (libtch/torch_api_generated.cpp) against
#     TORCH_DIR's headers and turns each wrapper that does not compile (an op the older
#     libtorch lacks or declares differently) into one that raises "not in libtorch X";
#     the Rust symbols stay, so tch links unchanged. The list goes to $OUT/stubbed.txt.
#  3. runs cargo with LIBTORCH=TORCH_DIR, the version check bypassed, the copy patched in
#     (`--config patch.crates-io.torch-sys.path=...`) and --target-dir $OUT, so the main
#     build (target/release) is untouched. Cargo.lock is restored afterwards (a path patch
#     rewrites the torch-sys entry).
# The binary is $OUT/release/pstl, with an rpath to TORCH_DIR/lib.
# Env: TORCH_COMPAT_DIR ($OUT, default target/torch-<major.minor>), CXX (g++),
#      NCCL_INCLUDE_DIR / CUDA_HOME (when TORCH_DIR's site-packages lacks nvidia/*/include).
set -euo pipefail

# All in a function: bash reads it whole before running, so editing this file while a
# long build runs cannot change what that build does next.
main() {
  cd "$(dirname "$0")/.."
  if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 TORCH_DIR [cargo-subcommand args...]  (TORCH_DIR: .../site-packages/torch)" >&2
    [ $# -ge 1 ] && echo "error: $1 is not a folder" >&2
    exit 2
  fi
  torch=$(cd "$1" && pwd)
  shift
  [ $# -gt 0 ] || set -- build --release
  for f in include/ATen/ATen.h lib/libtorch_cpu.so version.py; do
    [ -e "$torch/$f" ] || { echo "error: $torch/$f missing: TORCH_DIR must be a torch package folder" >&2; exit 2; }
  done
  version=$(sed -n "s/^__version__ = '\([0-9.]*\).*/\1/p" "$torch/version.py")
  [ -n "$version" ] || { echo "error: no __version__ in $torch/version.py" >&2; exit 2; }
  minor=$(cut -d. -f1,2 <<<"$version")
  out=${TORCH_COMPAT_DIR:-target/torch-$minor}
  mkdir -p "$out"
  out=$(cd "$out" && pwd)

  # The torch-sys version Cargo.lock pins, and its source in cargo's registry.
  sys_version=$(awk '/^name = "torch-sys"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"torch-sys-$sys_version" 2>/dev/null | head -1 || true)
  if [ -z "$src" ]; then
    cargo fetch --locked >/dev/null
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"torch-sys-$sys_version" | head -1)
  fi

  sys=$out/torch-sys
  stamp="torch-sys $sys_version patched for torch $version at $torch"
  if [ "$(cat "$sys/.pstl-compat" 2>/dev/null)" != "$stamp" ]; then
    echo "[torch-compat] copying torch-sys $sys_version to $sys and checking its op wrappers against torch $version"
    rm -rf "$sys" && cp -r "$src" "$sys" && chmod -R u+w "$sys"
    : >"$out/stubbed.txt"
    for round in 1 2 3; do
      errs=$out/check-$round.log
      ${CXX:-g++} -fsyntax-only -std=c++17 -w -fmax-errors=0 -D_GLIBCXX_USE_CXX11_ABI=1 \
        -DGLOG_USE_GLOG_EXPORT -I"$torch/include" -I"$torch/include/torch/csrc/api/include" \
        "$sys/libtch/torch_api_generated.cpp" >"$errs" 2>&1 && break
      n=$(python3 scripts/torch_compat_stub.py "$sys/libtch/torch_api_generated.cpp" "$errs" "$version" | tee -a "$out/stubbed.txt" | wc -l)
      if [ "$n" = 0 ]; then
        echo "error: torch_api_generated.cpp does not compile against torch $version and no wrapper could be stubbed; see $errs" >&2
        exit 1
      fi
      echo "[torch-compat] round $round: stubbed $n wrappers"
    done
    # The hand-written part must compile as is.
    ${CXX:-g++} -fsyntax-only -std=c++17 -w -D_GLIBCXX_USE_CXX11_ABI=1 -DGLOG_USE_GLOG_EXPORT \
      -I"$torch/include" -I"$torch/include/torch/csrc/api/include" "$sys/libtch/torch_api.cpp" \
      >"$out/check-api.log" 2>&1 || {
      echo "error: torch-sys's libtch/torch_api.cpp does not compile against torch $version; see $out/check-api.log" >&2
      exit 1
    }
    echo "$stamp" >"$sys/.pstl-compat"
    echo "[torch-compat] $(wc -l <"$out/stubbed.txt") wrappers stubbed (list: $out/stubbed.txt)"
  fi

  [ "$1" = patch ] && exit 0

  # Cargo records a path patch in Cargo.lock (so --locked cannot be used): build with it,
  # check that nothing but torch-sys's source moved, then put the lock back.
  args=()
  for a in "$@"; do [ "$a" = --locked ] || args+=("$a"); done
  lock_copy=$(mktemp)
  cp Cargo.lock "$lock_copy"
  trap 'cp "$lock_copy" Cargo.lock; rm -f "$lock_copy"' EXIT
  echo "[torch-compat] cargo ${args[*]} against $torch (torch $version) into $out"
  rc=0
  env -u LIBTORCH_USE_PYTORCH -u VIRTUAL_ENV LIBTORCH="$torch" LIBTORCH_BYPASS_VERSION_CHECK=1 \
    CARGO_TARGET_DIR="$out" \
    cargo --config "patch.crates-io.torch-sys.path=\"$sys\"" --offline "${args[@]}" || rc=$?
  moved=$(diff "$lock_copy" Cargo.lock | grep '^[<>]' | grep -v '^< source = "registry+https://github.com/rust-lang/crates.io-index"$' | grep -v '^< checksum = ' || true)
  if [ -n "$moved" ]; then
    echo "error: the patched build moved other Cargo.lock entries than torch-sys's source:" >&2
    echo "$moved" >&2
    exit 1
  fi
  exit $rc
}

main "$@"
