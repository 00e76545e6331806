"""PyTorch reference of PSTL's ST-GCN encoder with the official state_dict keys.

Written from the method notes (../shared/pstl-method.md, sections 2-4), not copied
from the authors' code. It lets tests load pstl's exports in plain PyTorch and check
pstl's numerics against the authors' golden outputs.

CLI:
  stgcn_ref.py --check-golden G.safetensors
      encoder (z_eval, z_eval_csm, A), Barlow Twins loss and MATM checks; exit 1 on failure.
  stgcn_ref.py --weights W.safetensors --input X.npy --output Z.npy [--ignore-joint 1,4]
      eval-mode features of X with official-key weights W (an `encoder.` prefix is accepted).
"""

import argparse
import sys

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

NUM_JOINTS = 25
CENTER = 20
# (child, parent), 1-based NTU bones; (21, 21) is the root's self pair and adds no edge.
BONES_1BASED = [
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21),
    (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1),
    (18, 17), (19, 18), (20, 19), (21, 21), (22, 23), (23, 8), (24, 25), (25, 12),
]
# (in, out, stride) per block; block 0 has no residual and no dropout.
BLOCKS = [(3, 16, 1), (16, 16, 1), (16, 16, 1), (16, 16, 1), (16, 32, 2),
          (32, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 256, 1)]
BT_LAMBDA = 2e-4


def spatial_graph(num_joints=NUM_JOINTS, center=CENTER, bones=BONES_1BASED):
    """ST-GCN "spatial" partition with max_hop 1, shape (3, V, V), float32."""
    adj = np.eye(num_joints)
    for c, p in bones:
        if c != p:
            adj[c - 1, p - 1] = adj[p - 1, c - 1] = 1
    hop = np.full((num_joints, num_joints), np.inf)
    hop[adj > 0] = 1
    hop[np.eye(num_joints) > 0] = 0
    normed = adj / adj.sum(axis=0, keepdims=True)  # A . D^-1, D = column sums
    to_center = hop[:, center]
    dj, di = to_center[:, None], to_center[None, :]  # hop(j, center), hop(i, center)
    near = hop == 1
    root0 = np.where(hop == 0, normed, 0)
    root1_close = np.where(near & (dj >= di), normed, 0)  # equal -> root, larger -> close
    further = np.where(near & (dj < di), normed, 0)
    return torch.tensor(np.stack([root0, root1_close, further]), dtype=torch.float32)


class GraphConv(nn.Module):
    """1x1 conv to K*out channels, then sum over partitions with the adjacency."""

    def __init__(self, c_in, c_out, k=3):
        super().__init__()
        self.k = k
        self.conv = nn.Conv2d(c_in, c_out * k, 1)

    def forward(self, x, a):
        x = self.conv(x)
        n, kc, t, v = x.shape
        x = x.view(n, self.k, kc // self.k, t, v)
        return torch.einsum("nkctv,kvw->nctw", x, a)


class Block(nn.Module):
    """ST-GCN block: gcn -> tcn, plus residual, then ReLU."""

    def __init__(self, c_in, c_out, stride, dropout, residual):
        super().__init__()
        self.gcn = GraphConv(c_in, c_out)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, (9, 1), (stride, 1), (4, 0)),
            nn.BatchNorm2d(c_out), nn.Dropout(dropout))
        if not residual:
            self.residual = None
        elif c_in == c_out and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, (stride, 1)), nn.BatchNorm2d(c_out))

    def forward(self, x, a):
        res = 0 if self.residual is None else self.residual(x)
        return torch.relu(self.tcn(self.gcn(x, a)) + res)


class Encoder(nn.Module):
    """ST-GCN at 1/4 width: (N, 3, T, V, M) -> (N, 256)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("A", spatial_graph())
        self.data_bn = nn.BatchNorm1d(3 * NUM_JOINTS)
        self.st_gcn_networks = nn.ModuleList(
            Block(ci, co, s, 0.0 if i == 0 else 0.5, residual=i > 0)
            for i, (ci, co, s) in enumerate(BLOCKS))
        self.edge_importance = nn.ParameterList(
            nn.Parameter(torch.ones_like(self.A)) for _ in BLOCKS)

    def forward(self, x, ignore_joint=None):
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        a = self.A
        importance = list(self.edge_importance)
        if ignore_joint is not None and len(ignore_joint) > 0:
            drop = {int(j) for j in ignore_joint}
            keep = torch.tensor([j for j in range(v) if j not in drop], device=x.device)
            x = x[..., keep]
            a = a[:, keep][:, :, keep]
            importance = [w[:, keep][:, :, keep] for w in importance]
        for block, w in zip(self.st_gcn_networks, importance):
            x = block(x, a * w)
        x = x.mean(dim=(2, 3)).view(n, m, -1).mean(dim=1)
        return x


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
