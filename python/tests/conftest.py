"""Fixtures: real pstl exports written by the real `pstl` binary into a temp folder.

The binary is `$PSTL_BIN` or `<repo>/target/release/pstl` (built by `make test`); the
weights are the authors' golden file (`$PSTL_GOLDEN` or `<repo>/../shared/golden/...`).
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def pstl_bin():
    path = Path(os.environ.get("PSTL_BIN", REPO / "target" / "release" / "pstl"))
    assert path.exists(), f"{path} missing: build pstl first (make build)"
    return path


def golden_path():
    path = Path(os.environ.get(
        "PSTL_GOLDEN", REPO.parent / "shared" / "golden" / "pstl_official_seed1.safetensors"))
    assert path.exists(), f"{path} missing"
    return path


def run_pstl(*args, cwd=None):
    """Run the binary on CPU; fail the test with its output on a non-zero exit."""
    cmd = [str(pstl_bin()), *map(str, args), "--device", "cpu", "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or REPO)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out


TINY = ["model.base_channels=4", "model.feature_dim=32", "model.projector_dim=64",
        "pretrain.batch_size=8", "pretrain.epochs=1", "pretrain.warmup_epochs=0",
        "eval.after_pretrain=false"]


def sets(items):
    return [a for kv in items for a in ("--set", kv)]


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    """Golden-weight exports, a tiny pretrained run and a store, with `pstl embed` outputs."""
    d = tmp_path_factory.mktemp("pstl")
    x = np.random.default_rng(0).standard_normal((5, 3, 50, 25, 2)).astype(np.float32)
    np.save(d / "x.npy", x)
    g = golden_path()
    run_pstl("export", "--checkpoint", g, "--hub", d / "hub", "--safetensors",
             d / "enc.safetensors", "--pt", d / "enc.pt", "--torchscript", d / "enc_ts.pt")
    for name, extra in [("z", []), ("z_drop", ["--drop-joints", "1,4,20"]),
                        ("z_motion", ["--stream", "motion"]), ("z_bone", ["--stream", "bone"])]:
        run_pstl("embed", "--checkpoint", g, "--input", d / "x.npy", "--output",
                 d / f"{name}.npy", *extra)
    run_pstl("synth", "--out", d / "s.h5", "--classes", "3", "--train-per-class", "6",
             "--test-per-class", "2")
    tiny = TINY + [f'data.path="{d / "s.h5"}"', f'run.dir="{d / "runs"}"', 'run.name="tiny"']
    run_pstl("pretrain", *sets(tiny))
    ckpt = d / "runs" / "tiny" / "checkpoint.safetensors"
    run_pstl("export", "--checkpoint", ckpt, "--hub", d / "tiny_hub", *sets(tiny))
    run_pstl("embed", "--checkpoint", ckpt, "--input", d / "x.npy", "--output",
             d / "z_tiny.npy", *sets(tiny))
    return {"dir": d, "x": x, "golden": g, "tiny_ckpt": ckpt, "store": d / "s.h5"}
