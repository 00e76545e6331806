# syntax=docker/dockerfile:1
# pstl in a container: `make docker` (docker or podman), then
# `docker run --gpus all -v "$PWD/runs:/work/runs" -w /work pstl pretrain --config ...`.
# Multi-GPU / multi-node: `torchrun`-style variables or `srun` (see docs/cluster.md).
#
# Both stages are Debian bookworm, so glibc and the HDF5 soname (libhdf5_serial.so.103,
# package libhdf5-103-1) are the ones the binary was linked against. No CUDA base image
# is needed: PyPI's torch==2.13.0 wheel brings its CUDA libraries (nvidia-* packages in
# the venv, found through torch's own rpaths); the host only provides the NVIDIA driver.

FROM rust:1.95-bookworm AS builder
# Unpinned apt versions: bookworm's packages only change in point releases, and exact
# versions would break the build at the next one. libgloo-dev: headers of the c10d bridge.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libhdf5-dev libgloo-dev pkg-config python3 python3-venv fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
# The same venv path as in the runtime stage: the binary's rpath points at its torch/lib.
# nvidia-cuda-crt / -cccl: CUDA headers for the bridge's NCCL part (build time only).
RUN python3 -m venv /opt/pstl/.venv \
    && /opt/pstl/.venv/bin/pip install --no-cache-dir torch==2.13.0 \
        "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*"
ENV LIBTORCH_USE_PYTORCH=1 \
    VIRTUAL_ENV=/opt/pstl/.venv \
    PATH=/opt/pstl/.venv/bin:$PATH \
    HDF5_DIR=/usr/lib/x86_64-linux-gnu/hdf5/serial
WORKDIR /src
COPY . .
# Same steps as `make build`; target/ lives in a cache mount, so copy the binary out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/pstl /usr/local/bin/pstl
# Only what the binary loads at run time: torch/lib and the nvidia-* libraries.
WORKDIR /opt/pstl/.venv/lib/python3.11/site-packages
RUN mkdir -p /opt/runtime/site-packages/torch \
    && cp -a torch/lib /opt/runtime/site-packages/torch/ \
    && find nvidia -name '*.so*' -exec cp -a --parents {} /opt/runtime/site-packages/ \;

FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="pstl" \
      org.opencontainers.image.description="PSTL self-supervised skeleton action learning on libtorch (tch)" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
# Unpinned apt versions, as above. The Gloo transport is inside libtorch_cpu.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libhdf5-103-1 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 pstl
COPY --from=builder /opt/runtime/site-packages /opt/pstl/.venv/lib/python3.11/site-packages
COPY --from=builder /usr/local/bin/pstl /usr/local/bin/pstl
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# A non-root default user (pstl, uid 1000); clusters that map users pass `--user $(id -u):$(id -g)`.
USER 1000
WORKDIR /work
ENTRYPOINT ["pstl"]
