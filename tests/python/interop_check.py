"""Check pstl's exports in plain PyTorch (called by the Rust integration tests).

  interop_check.py --torchscript F.pt --safetensors W.safetensors --input X.npy
                   --expected Z.npy [--classifier C.safetensors] [--tol 1e-4]
      Runs the TorchScript file (CPU, and CUDA when available) on all of X and on its
      first rows, and the reference encoder (stgcn_ref, strict official keys; plus
      Linear(256, classes) from `fc.weight`/`fc.bias` with --classifier) in eval mode;
      every output must be within tol of Z. Exit 0 if so, 1 on a mismatch, 2 when a file
      cannot be loaded (strictly) or the TorchScript module fails to run.
  interop_check.py --make-official-pt OUT.pt --from-safetensors W.safetensors
      Writes `torch.save(encoder.state_dict())` (official keys, no prefix) of the encoder
      in W (keys under `encoder.` when W is a full checkpoint).

Prints one summary line.
"""

import argparse
import pathlib
import sys

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from stgcn_ref import build_encoder, strip_prefix  # noqa: E402


class LoadError(Exception):
    """A file could not be read or fit strictly, or the TorchScript module failed to run."""


def one_line(err):
    """An exception's message on one line."""
    return " ".join(str(err).split())


def load_reference(weights, classifier):
    """Reference encoder (+ optional linear head) with strictly loaded weights, eval mode."""
    try:
        enc = build_encoder()
        enc.load_state_dict(strip_prefix(load_file(weights)), strict=True)
        if classifier is None:
            return enc.eval()
        fc_state = load_file(classifier)
        fc = torch.nn.Linear(256, fc_state["fc.weight"].shape[0])
        fc.load_state_dict(strip_prefix(fc_state, "fc."), strict=True)
        return torch.nn.Sequential(enc, fc).eval()
    except Exception as e:  # any failure to read or to fit strictly is a load error
        raise LoadError(f"reference load: {one_line(e)}") from e


def run_torchscript(path, x, device):
    """Outputs of the TorchScript file on all rows and on the first rows of x."""
    try:
        module = torch.jit.load(path, map_location=device).eval()
    except Exception as e:
        raise LoadError(f"torch.jit.load on {device}: {one_line(e)}") from e
    part = max(1, min(3, x.shape[0] - 1))
    try:
        with torch.inference_mode():
            full = module(x.to(device)).cpu()
            head = module(x[:part].to(device)).cpu()
    except RuntimeError as e:  # e.g. a shape or device baked in by tracing
        raise LoadError(f"TorchScript forward on {device}: {one_line(e)}") from e
    return {f"ts-{device}-n{x.shape[0]}": (full, slice(None)),
            f"ts-{device}-n{part}": (head, slice(0, part))}


def check(args):
    """Compare every output against the expected array; returns the exit code."""
    # TF32 would put CUDA results far outside the tolerance.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        x = torch.from_numpy(np.load(args.input)).float()
        z = torch.from_numpy(np.load(args.expected)).float()
        outputs = run_torchscript(args.torchscript, x, "cpu")
        if torch.cuda.is_available():
            outputs.update(run_torchscript(args.torchscript, x, "cuda"))
        ref = load_reference(args.safetensors, args.classifier)
    except (LoadError, OSError, ValueError) as e:
        print(f"interop_check FAIL: {one_line(e)}")
        return 2
    with torch.inference_mode():
        outputs["reference"] = (ref(x), slice(None))
    diffs, bad = [], []
    for name, (out, rows) in outputs.items():
        want = z[rows]
        if out.shape != want.shape:
            bad.append(f"{name} shape {tuple(out.shape)} != {tuple(want.shape)}")
            continue
        diff = (out.float() - want).abs().max().item()
        diffs.append(f"{name} {diff:.2e}")
        if not diff <= args.tol:
            bad.append(f"{name} diff {diff:.2e} > {args.tol:g}")
    status = "FAIL: " + "; ".join(bad) + " | " if bad else "OK: "
    print(f"interop_check {status}max abs diff " + (", ".join(diffs) or "none"))
    return 1 if bad else 0


def make_official_pt(out, weights):
    """Save the encoder of `weights` as an official-format state_dict .pt; exit code."""
    try:
        state = load_file(weights)
        if any(k.startswith("encoder.") for k in state):
            state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        enc = build_encoder()
        enc.load_state_dict(state, strict=True)
    except Exception as e:
        print(f"interop_check FAIL: {weights}: {one_line(e)}")
        return 2
    torch.save(enc.state_dict(), out)
    print(f"interop_check OK: wrote {out} ({len(enc.state_dict())} official keys)")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torchscript", metavar="F.pt")
    ap.add_argument("--safetensors", metavar="W.safetensors")
    ap.add_argument("--input", metavar="X.npy")
    ap.add_argument("--expected", metavar="Z.npy")
    ap.add_argument("--classifier", metavar="C.safetensors")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--make-official-pt", metavar="OUT.pt")
    ap.add_argument("--from-safetensors", metavar="W.safetensors")
    args = ap.parse_args(argv)
    if args.make_official_pt:
        if not args.from_safetensors:
            ap.error("--make-official-pt needs --from-safetensors")
        return make_official_pt(args.make_official_pt, args.from_safetensors)
    if not all((args.torchscript, args.safetensors, args.input, args.expected)):
        ap.error("give --torchscript, --safetensors, --input and --expected")
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
