"""The authors' PSTL pretraining loop in plain PyTorch, on a pstl HDF5 store: the
baseline of the seed study in docs/fidelity.md ("Training outcome: pstl against the PyTorch
loop"), written for this repository after the structure of YujieOuO/PSTL
(`procedure.py`: a shuffled DataLoader that keeps the last partial batch, the lr set by
`adjust_learning_rate`, Adam with L2 weight decay) around the step of
`benches/pytorch_step.py` (the official ST-GCN, three views, one augmentation draw per
view and batch, MATM's second drop drawn once per batch, CSM, two Barlow Twins losses).

The network's shapes (graph, widths, projector size) come from a dump of
`pstl bench --steps 0 --dump F`; the weights are then re-initialised with PyTorch's own
defaults (as the authors' code leaves them) from `--seed`. The trained encoder is
written with the official keys under `encoder.`, which `pstl eval --checkpoint` reads,
so both implementations are scored by the same probe:

  pstl bench -c configs/synthetic.toml --steps 0 --dump shape.safetensors
  python benches/pytorch_train.py --shape shape.safetensors --store data/synthetic.h5 \
      --seed 1 --out torch_s1.safetensors
  pstl eval linear -c configs/synthetic.toml --checkpoint torch_s1.safetensors --seed 1

The defaults are `configs/synthetic.toml`'s (6 epochs, batch 32, lr 5e-3 with one
warm-up epoch, stepped per batch); `--authors-schedule` uses the authors' function
instead (10 warm-up epochs, set once per epoch, so epoch 0 runs at lr 0).
"""

import argparse
import math
import random
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pytorch_step import Pstl, load, model_state, step_loss, views  # noqa: E402


def reset(model):
    """PyTorch's default initialisation of every layer, as the authors' code leaves it."""
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    for p in model.encoder.edge_importance:
        torch.nn.init.ones_(p)


def lr_at(args, epoch, frac):
    if args.authors_schedule:
        e, w = float(epoch), 10.0
    else:
        e, w = epoch + (frac if args.schedule == "step" else 0.0), float(args.warmup)
    if e < w:
        return args.lr * e / w
    span = max(args.epochs - w, 1.0)
    return args.lr * (1 + math.cos(math.pi * (e - w) / span)) / 2


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", required=True, help="dump of `pstl bench --steps 0 --dump`")
    p.add_argument("--store", required=True, help="pstl HDF5 store (train split is used)")
    p.add_argument("--out", required=True, help="encoder safetensors to write")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--weight-decay", type=float, default=1e-5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--schedule", choices=["step", "epoch"], default="step")
    p.add_argument("--authors-schedule", action="store_true")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    state, meta = load(args.shape)
    model = Pstl(model_state(state), args.dropout, float(meta["lambda"]))
    reset(model)
    model = model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    with h5py.File(args.store, "r") as f:
        x_all = torch.from_numpy(np.asarray(f["train/x"], dtype=np.float32))
    n = x_all.shape[0]
    per_epoch = math.ceil(n / args.batch)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for b in range(per_epoch):
            idx = order[b * args.batch:(b + 1) * args.batch]
            if idx.numel() < 2:  # BatchNorm needs two samples (pstl skips it too)
                continue
            lr = lr_at(args, epoch, b / per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            x = x_all[idx].to(device, non_blocking=True)
            loss = step_loss(model, *views(x))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
            count += idx.numel()
        mean = total / count
        if not math.isfinite(mean):
            print(f"pytorch-train: epoch {epoch + 1}: non-finite loss", file=sys.stderr)
            return 1
        print(f"pytorch-train: epoch {epoch + 1}/{args.epochs} loss {mean:.4f} lr {lr:.2e} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    enc = {f"encoder.{k}": v.detach().cpu().contiguous()
           for k, v in model.encoder.state_dict().items()}
    save_file(enc, args.out, metadata={"format": "pytorch-train", "seed": str(args.seed)})
    print(f"RESULT final_loss={mean:.4f} seconds={time.perf_counter() - t0:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
