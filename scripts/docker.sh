#!/bin/bash
# Build the pstl image with docker or podman, whichever works here:
#   bash scripts/docker.sh [TAG]      (make docker)
# Prints the build time and the image size.
set -euo pipefail
tag=${1:-pstl:latest}
engine=${ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
  elif command -v podman >/dev/null; then engine=podman
  else echo "neither a running docker nor podman found" >&2; exit 1; fi
fi
cd "$(dirname "$0")/.."
start=$(date +%s)
"$engine" build --network host -t "$tag" .
echo "built $tag with $engine in $(( $(date +%s) - start )) s"
"$engine" image inspect "$tag" --format 'image size: {{.Size}} bytes'
