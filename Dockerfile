# syntax=docker/dockerfile:1
# pstl in a container: `docker build -t pstl .` then
# `docker run --gpus all -v "$PWD/runs:/work/runs" -w /work pstl pretrain --config ...`.
#
# Both stages are Debian bookworm, so glibc and the HDF5 soname (libhdf5_serial.so.103,
# package libhdf5-103-1) are the ones the binary was linked against. No CUDA base image
# is needed: PyPI's torch==2.13.0 wheel brings its CUDA libraries (nvidia-* packages in
# the venv, found through torch's own rpaths); the host only provides the NVIDIA driver.

FROM rust:1.95-bookworm AS builder
# Unpinned apt versions: bookworm's packages only change in point releases, and exact
# versions would break the build at the next one.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libhdf5-dev pkg-config python3 python3-venv fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
# The same venv path as in the runtime stage: the binary's rpath points at its torch/lib.
RUN python3 -m venv /opt/pstl/.venv \
    && /opt/pstl/.venv/bin/pip install --no-cache-dir torch==2.13.0
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

FROM debian:bookworm-slim
# Unpinned apt versions, as above.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libhdf5-103-1 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
# torch/lib and the nvidia-* CUDA libraries live under the venv's lib/ (Python itself is not needed).
COPY --from=builder /opt/pstl/.venv/lib /opt/pstl/.venv/lib
COPY --from=builder /usr/local/bin/pstl /usr/local/bin/pstl
ENTRYPOINT ["pstl"]
