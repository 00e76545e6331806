"""The authors' PSTL pretraining step in plain PyTorch: the baseline `pstl bench` is
measured against (`make bench-compare`), written for this repository after the
structure of YujieOuO/PSTL (`procedure.py`, `model.py`, `module/gcn/st_gcn.py`).

As in their code: the official ST-GCN (einsum graph convolution, BatchNorm, dropout),
three views of each batch with one random crop / shear / rotation / flip draw per view
and batch, MATM on view 2, CSM joints removed inside the encoder for view 3, the
Barlow Twins head applied to (anchor, view) for each loss (so the anchor is projected
twice) with the D x D cross-correlation, and Adam with L2 weight decay.

Weights and the batch come from `pstl bench --dump F.safetensors`:

  python benches/pytorch_step.py --check F      # same views and weights: losses equal?
  python benches/pytorch_step.py --weights F --steps 3 --threads 2   # timing

The check recomputes pstl's loss on the dumped views, takes one Adam step and
recomputes it; both must equal pstl's to `--rtol` (1e-4) relative. Timing prints the
step split, peak RSS, the FLOPs of one step counted by PyTorch's FlopCounterMode and a
final `RESULT samples_per_s=...` line.
"""

import argparse
import math
import os
import random
import resource
import sys
import time

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file

FLIP = [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 20, 23, 24, 21, 22]
DEGREE = [3, 2, 2, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 1, 4, 1, 2, 1, 2]


class Block(nn.Module):
    """One ST-GCN block: 1x1 conv to K*out channels, aggregation with A, temporal conv."""

    def __init__(self, cin, cout, stride, residual, dropout, k=3, kt=9):
        super().__init__()
        self.k = k
        self.gcn = nn.Module()
        self.gcn.conv = nn.Conv2d(cin, k * cout, 1)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, (kt, 1), (stride, 1), ((kt - 1) // 2, 0)),
            nn.BatchNorm2d(cout),
            nn.Dropout(dropout, inplace=True),
        )
        if not residual:
            self.residual = None
        elif cin == cout and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(nn.Conv2d(cin, cout, 1, (stride, 1)), nn.BatchNorm2d(cout))

    def forward(self, x, a, keep):
        a = a[:, keep][:, :, keep]
        res = 0 if self.residual is None else self.residual(x)
        y = self.gcn.conv(x)
        n, kc, t, v = y.shape
        y = y.view(n, self.k, kc // self.k, t, v)
        y = torch.einsum("nkctv,kvw->nctw", (y, a)).contiguous()
        return torch.relu(self.tcn(y) + res)


class Encoder(nn.Module):
    """ST-GCN at the width of the dumped weights, with joints removed for CSM."""

    def __init__(self, a, widths, dropout):
        super().__init__()
        k, v, _ = a.shape
        self.register_buffer("A", a.clone())
        self.data_bn = nn.BatchNorm1d(3 * v)
        blocks = []
        for i, (cin, cout, stride, residual) in enumerate(widths):
            blocks.append(Block(cin, cout, stride, residual, 0.0 if i == 0 else dropout, k))
        self.st_gcn_networks = nn.ModuleList(blocks)
        self.edge_importance = nn.ParameterList([nn.Parameter(torch.ones(a.shape)) for _ in blocks])

    def forward(self, x, ignore=()):
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).contiguous().view(n * m, v * c, t)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).contiguous().view(n * m, c, t, v)
        keep = sorted(set(range(v)) - set(ignore))
        x = x[:, :, :, keep]
        for block, imp in zip(self.st_gcn_networks, self.edge_importance):
            x = block(x, self.A * imp, keep)
        x = x.mean(dim=(2, 3))
        return x.view(n, m, -1).mean(dim=1)


class BarlowTwins(nn.Module):
    """Projector + non-affine BN + loss with the D x D cross-correlation."""

    def __init__(self, feature, dim, lambd):
        super().__init__()
        self.projector = nn.Sequential(
            nn.Linear(feature, dim, bias=False),
            nn.BatchNorm1d(dim),
            nn.ReLU(True),
            nn.Linear(dim, dim, bias=False),
            nn.BatchNorm1d(dim),
            nn.ReLU(True),
            nn.Linear(dim, dim, bias=False),
        )
        self.bn = nn.BatchNorm1d(dim, affine=False)
        self.lambd = lambd

    def forward(self, f1, f2):
        z1 = self.bn(self.projector(f1).float())
        z2 = self.bn(self.projector(f2).float())
        n, d = z1.shape
        c = (z1.T @ z2).div_(n)
        on = torch.diagonal(c).add(-1).pow(2).sum()
        off = c.flatten()[:-1].view(d - 1, d + 1)[:, 1:].pow(2).sum()
        return on + self.lambd * off


class Pstl(nn.Module):
    def __init__(self, state, dropout, lambd):
        super().__init__()
        a = state["encoder.A"]
        widths, i = [], 0
        while f"encoder.st_gcn_networks.{i}.gcn.conv.weight" in state:
            w = state[f"encoder.st_gcn_networks.{i}.gcn.conv.weight"]
            cin, cout = w.shape[1], w.shape[0] // a.shape[0]
            stride = 2 if i in (4, 7) else 1  # the official strides
            widths.append((cin, cout, stride, i > 0))
            i += 1
        self.encoder = Encoder(a, widths, dropout)
        d, f = state["projector.projector.0.weight"].shape
        self.projector = BarlowTwins(f, d, lambd)
        self.load_state_dict(state, strict=True)


# --- the authors' augmentations, one draw per view and batch ---------------------------
def crop(x, ratio=6):
    t = x.shape[2]
    pad = t // ratio
    start = random.randint(0, 2 * pad)
    out = torch.cat([torch.flip(x[:, :, :pad], [2]), x, torch.flip(x[:, :, -pad:], [2])], 2)
    return out[:, :, start:start + t]


def shear(x, amp=1.0):
    s = torch.tensor([[1, random.uniform(-amp, amp), random.uniform(-amp, amp)],
                      [random.uniform(-amp, amp), 1, random.uniform(-amp, amp)],
                      [random.uniform(-amp, amp), random.uniform(-amp, amp), 1]],
                     dtype=x.dtype, device=x.device)
    return torch.einsum("nctvm,cd->ndtvm", x, s)


def rotate(x):
    main = random.randint(0, 2)
    for axis in range(3):
        ang = math.radians(random.uniform(0, 30) if axis == main else random.uniform(0, 1))
        c, s = math.cos(ang), math.sin(ang)
        r = [[[1, 0, 0], [0, c, s], [0, -s, c]],
             [[c, 0, -s], [0, 1, 0], [s, 0, c]],
             [[c, s, 0], [-s, c, 0], [0, 0, 1]]][axis]
        r = torch.tensor(r, dtype=x.dtype, device=x.device).T
        x = torch.einsum("nctvm,cd->ndtvm", x, r)
    return x


def flip(x):
    return x[:, :, :, FLIP] if random.random() < 0.5 else x


def matm(x, m=10):
    n, c, t, v, p = x.shape
    motion = torch.zeros_like(x)
    motion[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    att = (-(motion ** 2)).mean((1, 3, 4))
    _, idx = torch.topk(att, t - m)
    idx, _ = torch.sort(idx, dim=1)
    x = x.gather(2, idx[:, None, :, None, None].expand(n, c, t - m, v, p))
    keep = sorted(random.sample(range(t - m), t - 2 * m))
    return x[:, :, keep]


def csm(k=8):
    pool = [j for j, d in enumerate(DEGREE) for _ in range(d)]
    return random.sample(pool, k)


def views(x):
    def aug(x):
        return flip(rotate(shear(crop(x))))
    v1 = aug(x)
    v2 = matm(aug(x))
    v3 = aug(x)
    return v1, v2, v3, csm()


def step_loss(model, v1, v2, v3, drop):
    f1 = model.encoder(v1)
    f2 = model.encoder(v2)
    f3 = model.encoder(v3, drop)
    return model.projector(f1, f2) + model.projector(f1, f3)


def load(path):
    state = load_file(path)
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    return state, meta


def model_state(state):
    return {k: v for k, v in state.items() if k.startswith(("encoder.", "projector."))}


def check(args):
    state, meta = load(args.check)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    model = Pstl(model_state(state), float(meta["dropout"]), float(meta["lambda"]))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=float(meta["lr"]),
                           weight_decay=float(meta["weight_decay"]))
    v = (state["view.anchor"], state["view.temporal"], state["view.spatial"],
         state["view.drop"].tolist())
    before = step_loss(model, *v)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = step_loss(model, *v)
    ok = True
    # Adam's first step moves every weight by about lr * sign(gradient), so weights whose
    # gradient is at rounding level (biases before a BatchNorm) move by a full lr in a
    # direction set by rounding: the second loss is compared at --rtol-after.
    for name, ours, theirs, tol in (
            ("before", before.item(), state["loss.before"].item(), args.rtol),
            ("after one Adam step", after.item(), state["loss.after"].item(), args.rtol_after)):
        rel = abs(ours - theirs) / max(abs(theirs), 1e-12)
        good = rel <= tol
        ok &= good
        print(f"check: loss {name}: pytorch {ours:.6f} pstl {theirs:.6f} "
              f"relative difference {rel:.2e} ({'ok' if good else 'MISMATCH'}, tolerance {tol:g})")
    return 0 if ok else 1


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timing(args):
    state, meta = load(args.weights)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    # PSTL_TF32_MATMUL=1: TF32 for cuBLAS fp32 matmuls, as pstl's switch of that name
    # (PyTorch's default, like pstl's, is off; cuDNN convolutions use TF32 in both).
    torch.backends.cuda.matmul.allow_tf32 = os.environ.get("PSTL_TF32_MATMUL") == "1"
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    model = Pstl(model_state(state), args.dropout, float(meta["lambda"])).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=float(meta["weight_decay"]))
    x = state["x"].to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    split = [0.0, 0.0, 0.0, 0.0]
    flops = None
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        v = views(x)
        sync(device)
        t1 = time.perf_counter()
        if flops is None:
            from torch.utils.flop_counter import FlopCounterMode
            counter = FlopCounterMode(display=False)
        else:
            counter = None
        with counter if counter is not None else torch.autograd.profiler.record_function("step"):
            with autocast:
                loss = step_loss(model, *v)
            sync(device)
            t2 = time.perf_counter()
            opt.zero_grad()
            loss.backward()
            sync(device)
            t3 = time.perf_counter()
        if counter is not None:
            flops = counter.get_total_flops()
        opt.step()
        sync(device)
        t4 = time.perf_counter()
        if i >= args.warmup:
            for j, d in enumerate((t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                split[j] += d
    secs = sum(split)
    n = args.steps
    b = x.shape[0]
    print(f"pytorch: {n} steps of batch {b} on {device} ({torch.get_num_threads()} threads, "
          f"projector {model.projector.projector[0].weight.shape[0]}, {args.precision}): "
          f"{secs / n:.3f} s/step, {n * b / secs:.2f} samples/s, "
          f"{flops * n / secs / 1e9:.1f} GFLOP/s (last loss {loss.item():.3f})")
    ms = [1e3 * s / n for s in split]
    print(f"pytorch: per step: views (augment + masks) {ms[0]:.1f} ms, forward {ms[1]:.1f} ms, "
          f"backward {ms[2]:.1f} ms, optimizer {ms[3]:.1f} ms; {flops / 1e9:.1f} GFLOP/step "
          f"(FlopCounterMode)")
    if device.type == "cuda":
        print(f"pytorch: memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB allocator peak")
    else:
        print(f"pytorch: memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB peak RSS")
    print(f"RESULT samples_per_s={n * b / secs:.4f}")
    if args.profile:
        profile(model, opt, x, autocast, device, min(n, 5))
    return 0


# Kernel (CUDA) or operator (CPU) name -> family; the first match wins.
FAMILIES = [
    ("batch norm", ("batch_norm", "batchnorm", "bn_fw", "bn_bw", "native_batch_norm")),
    ("convolution", ("conv", "cudnn", "implicit_gemm", "winograd", "xmma_fprop", "xmma_dgrad", "xmma_wgrad")),
    ("matmul", ("gemm", "matmul", "addmm", "bmm", "aten::mm", "cublas", "cutlass", "einsum")),
    ("optimizer", ("foreach", "multi_tensor", "adam")),
    ("reductions", ("reduce", "sum", "mean")),
    ("copies and indexing", ("copy", "index", "gather", "scatter", "cat", "transpose", "permute")),
    ("elementwise", ("elementwise", "vectorized", "unrolled", "relu", "threshold", "clamp", "mul", "add", "div")),
]


def family(name):
    low = name.lower()
    for fam, keys in FAMILIES:
        if any(k in low for k in keys):
            return fam
    return "other"


def profile(model, opt, x, autocast, device, steps):
    """`steps` more steps under torch.profiler; device time by kernel family (CUDA),
    or operator self time by family (CPU)."""
    from torch.profiler import ProfilerActivity, profile as prof_ctx

    cuda = device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with prof_ctx(activities=acts) as prof:
        for _ in range(steps):
            v = views(x)
            with autocast:
                loss = step_loss(model, *v)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync(device)
    fams = {}
    for e in prof.key_averages():
        us = e.self_device_time_total if cuda else e.self_cpu_time_total
        if us > 0 and (not cuda or e.device_type == torch.autograd.DeviceType.CUDA):
            fams[family(e.key)] = fams.get(family(e.key), 0.0) + us / 1e3 / steps
    total = sum(fams.values())
    what = "CUDA kernel time" if cuda else "operator self CPU time"
    print(f"KERNELS total {total:.2f} ms/step of {what} over {steps} profiled steps")
    for fam, ms in sorted(fams.items(), key=lambda kv: -kv[1]):
        print(f"KERNEL {fam:<22} {ms:9.2f} ms {100 * ms / max(total, 1e-12):5.1f} %")


def peak(args):
    """The machine's limits for this step: a 4096^3 matrix product and the last
    block's 256-channel temporal convolution (forward + backward, 256 sequences of
    13 x 25), in fp32, in bf16, and in bf16 computed by the fp32 kernel on the bf16
    operands (what pstl's bf16 mode does for that convolution on CPUs without AMX)."""
    import torch.nn.functional as F
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    def best(fn, reps):
        fn()
        times = []
        for _ in range(reps):
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t)
        return min(times)

    n = 4096
    for dt in (torch.float32, torch.bfloat16):
        a = torch.randn(n, n, device=device, dtype=dt)
        secs = best(lambda: a @ a, 3)
        print(f"peak: matmul {n}^3 {str(dt)[6:]}: {2 * n**3 / secs / 1e9:.0f} GFLOP/s")
    x32 = torch.randn(256, 256, 13, 25, device=device)
    w32 = torch.randn(256, 256, 9, 1, device=device) * 0.02
    flops = 3 * 2 * 256 * 256 * 9 * 13 * 25 * 256
    for name, dt, up in (("fp32", torch.float32, False), ("bf16", torch.bfloat16, False),
                         ("bf16 via fp32 kernel", torch.bfloat16, True)):
        x = x32.to(dt).requires_grad_()
        w = w32.to(dt).requires_grad_()

        def step():
            xi, wi = (x.float(), w.float()) if up else (x, w)
            y = F.conv2d(xi, wi, padding=(4, 0)).to(dt)
            y.backward(torch.ones_like(y))
        secs = best(step, 3)
        print(f"peak: temporal conv 256x256x9, forward + backward, {name}: {secs:.3f} s, "
              f"{flops / secs / 1e9:.0f} GFLOP/s")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", help="dump of `pstl bench --dump`: compare the losses")
    p.add_argument("--weights", help="dump of `pstl bench --dump`: time the step")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="0 = PyTorch's default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--rtol-after", type=float, default=1e-3)
    p.add_argument("--profile", action="store_true",
                   help="after the timing, profile a few steps: time by kernel family")
    p.add_argument("--peak", action="store_true",
                   help="time a large matmul and the largest convolution (the machine's limits)")
    args = p.parse_args()
    if args.peak:
        return peak(args)
    if args.check:
        return check(args)
    if args.weights:
        return timing(args)
    p.error("give --check F, --weights F or --peak")


if __name__ == "__main__":
    sys.exit(main())
