"""PyTorch checks of PSTL's ST-GCN encoder with the official state_dict keys: the
encoder of the `pstl-torch` package (python/pstl_torch, written from the method notes,
not copied from the authors' code), the Barlow Twins loss and MATM. They let tests
load pstl's exports in plain PyTorch and check the numerics against the authors'
golden outputs.

CLI:
  stgcn_ref.py --check-golden G.safetensors
      encoder (z_eval, z_eval_csm, A), Barlow Twins loss and MATM checks; exit 1 on failure.
  stgcn_ref.py --weights W.safetensors --input X.npy --output Z.npy [--ignore-joint 1,4]
      eval-mode features of X with official-key weights W (an `encoder.` prefix is accepted).
"""

import argparse
import pathlib
import sys

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

BT_LAMBDA = 2e-4

# The encoder is the Python package's (python/pstl_torch), imported from the source
# tree so these checks also run before `make test` installs the package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "python"))
from pstl_torch.model import Encoder, spatial_graph  # noqa: E402


def build_encoder() -> nn.Module:
    """A freshly initialised reference encoder (PyTorch default init)."""
    return Encoder()


def strip_prefix(state, prefix="encoder."):
    """Drop `prefix` from the keys when every key carries it."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_encoder(path) -> nn.Module:
    """Reference encoder with official-key safetensors weights, strict, eval mode."""
    enc = build_encoder()
    enc.load_state_dict(strip_prefix(load_file(str(path))), strict=True)
    return enc.eval()


def projector_forward(state, f):
    """Official projector (Linear, BN, ReLU, Linear, BN, ReLU, Linear), train-mode BNs."""
    p = "projector.projector."
    bn = torch.nn.functional.batch_norm
    h = f @ state[p + "0.weight"].T
    h = torch.relu(bn(h, None, None, state[p + "1.weight"], state[p + "1.bias"], training=True))
    h = h @ state[p + "3.weight"].T
    h = torch.relu(bn(h, None, None, state[p + "4.weight"], state[p + "4.bias"], training=True))
    return h @ state[p + "6.weight"].T


def bt_loss(state, f1, f2, divisor=None):
    """Barlow Twins loss with the non-affine train-mode `bn`; c divided by N by default."""
    bn = torch.nn.functional.batch_norm
    a = bn(projector_forward(state, f1), None, None, training=True)
    b = bn(projector_forward(state, f2), None, None, training=True)
    c = a.T @ b / (f1.shape[0] if divisor is None else divisor)
    diag = torch.diagonal(c)
    off = c.pow(2).sum() - diag.pow(2).sum()
    return (diag - 1).pow(2).sum() + BT_LAMBDA * off


def motion_score(x):
    """Per-frame MATM score (N, T): mean over C, V, M of the squared next-frame difference."""
    d = torch.zeros_like(x)
    d[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return d.pow(2).mean(dim=(1, 3, 4))


def check_matm(x_in, x_out, m=10):
    """Per sample: are the output frames an in-order subset of the T-m lowest-score frames?

    Returns one dict per sample with the matched source frame indices and flags.
    """
    reports = []
    score = motion_score(x_in)
    t = x_in.shape[2]
    for s in range(x_in.shape[0]):
        order = torch.sort(score[s], stable=True).indices
        kept = set(order[: t - m].tolist())
        boundary = score[s][order[t - m - 1]], score[s][order[t - m]]
        src = []
        for f in range(x_out.shape[2]):
            hits = [k for k in range(t) if torch.equal(x_out[s, :, f], x_in[s, :, k])]
            src.append(hits[0] if len(hits) == 1 else hits)
        flat = [h for h in src if isinstance(h, int)]
        reports.append({
            "sample": s,
            "source_frames": src,
            "all_unique_match": len(flat) == len(src),
            "in_time_order": flat == sorted(flat) and len(set(flat)) == len(flat),
            "all_in_lowest": all(h in kept for h in flat),
            "tie_at_cut": bool(boundary[0] == boundary[1]),
            "distinct_scores": len(set(score[s].tolist())),
        })
    return reports


def check_golden(path):
    """Compare the reference against the authors' golden outputs; returns success."""
    g = load_file(str(path))
    ok = True
    enc = build_encoder()
    enc.load_state_dict(strip_prefix({k: v for k, v in g.items() if k.startswith("encoder.")}),
                        strict=True)
    enc.eval()
    a_diff = (spatial_graph() - g["encoder.A"]).abs().max().item()
    print(f"A: built vs golden max abs diff {a_diff:.3g}")
    ok &= a_diff == 0.0
    with torch.no_grad():
        for key, ignore in (("z_eval", None), ("z_eval_csm", g["ignore_joint"].tolist())):
            diff = (enc(g["x"], ignore) - g[key]).abs().max().item()
            print(f"{key}: max abs diff {diff:.3g} (ignore_joint={ignore})")
            ok &= diff <= 1e-4
        n = g["f1"].shape[0]
        for label, div in (("N", n), ("N-1", n - 1), ("128 (batch size)", 128)):
            loss = bt_loss(g, g["f1"], g["f2"], div).item()
            print(f"bt_loss c/{label} (train-mode BNs): {loss:.6f} vs golden "
                  f"{g['bt_loss'].item():.6f}")
        ok &= abs(bt_loss(g, g["f1"], g["f2"]).item() - g["bt_loss"].item()) <= 1e-4 * max(
            1.0, abs(g["bt_loss"].item()))
    for r in check_matm(g["matm_in"], g["matm_out"]):
        print(f"matm sample {r['sample']}: unique={r['all_unique_match']} "
              f"ordered={r['in_time_order']} lowest={r['all_in_lowest']} "
              f"tie_at_cut={r['tie_at_cut']} distinct_scores={r['distinct_scores']} "
              f"frames={r['source_frames']}")
        ok &= r["all_unique_match"] and r["in_time_order"] and r["all_in_lowest"]
    print("golden check:", "OK" if ok else "FAILED")
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check-golden", metavar="G.safetensors")
    ap.add_argument("--weights", metavar="W.safetensors")
    ap.add_argument("--input", metavar="X.npy")
    ap.add_argument("--output", metavar="Z.npy")
    ap.add_argument("--ignore-joint", default="", help="comma-separated 0-based joints")
    args = ap.parse_args(argv)
    if args.check_golden:
        return 0 if check_golden(args.check_golden) else 1
    if not (args.weights and args.input and args.output):
        ap.error("give --check-golden, or --weights, --input and --output")
    ignore = [int(j) for j in args.ignore_joint.split(",") if j]
    with torch.no_grad():
        z = load_encoder(args.weights)(torch.from_numpy(np.load(args.input)).float(), ignore)
    np.save(args.output, z.numpy())
    return 0


if __name__ == "__main__":
    sys.exit(main())
