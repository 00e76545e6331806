#!/bin/bash
# Run the built image (make docker first): `pstl --help`, a 1-epoch pretraining on
# synthetic data, and a 2-rank Gloo run as two containers on the host network.
#   bash scripts/docker-test.sh [TAG]      (make docker-test)
set -euo pipefail
tag=${1:-pstl:latest}
engine=${ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
work=$(mktemp -d /tmp/pstl-docker-test.XXXXXX)
chmod 777 "$work"
trap 'rm -rf "$work"' EXIT
run() { "$engine" run --rm --network host -v "$work:/work" -w /work "$@"; }
tiny=(--device cpu --threads 1 --set run.dir=/work/runs --set data.path=/work/synthetic.h5
      --set model.base_channels=4 --set model.feature_dim=32 --set model.projector_dim=64
      --set pretrain.batch_size=32 --set pretrain.epochs=1 --set pretrain.warmup_epochs=0
      --set pretrain.log_every=1 --set pretrain.dist_timeout_s=60)
echo "== pstl --help"
run "$tag" --help | head -n 5
echo "== synthetic data"
run "$tag" synth --out /work/synthetic.h5 --classes 4 --train-per-class 16 --test-per-class 4
echo "== 1-epoch pretraining, 1 process"
run "$tag" pretrain "${tiny[@]}" --set run.name=one
port=$(( 20000 + RANDOM % 20000 ))
echo "== 1-epoch pretraining, 2 ranks (Gloo over TCP, MASTER_PORT=$port)"
env_r() { echo -e "-e\nRANK=$1\n-e\nWORLD_SIZE=2\n-e\nMASTER_ADDR=127.0.0.1\n-e\nMASTER_PORT=$port"; }
mapfile -t e0 < <(env_r 0); mapfile -t e1 < <(env_r 1)
run "${e1[@]}" "$tag" pretrain "${tiny[@]}" --set run.name=two > "$work/rank1.log" 2>&1 &
r1=$!
run "${e0[@]}" "$tag" pretrain "${tiny[@]}" --set run.name=two
wait "$r1" || { cat "$work/rank1.log"; exit 1; }
echo "-- rank 1:"; cat "$work/rank1.log"
echo "== files of the 2-rank run"; ls -l "$work/runs/two"
head -n 3 "$work/runs/two/metrics.csv"
echo "docker-test: OK"
