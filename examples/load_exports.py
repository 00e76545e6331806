"""Load pstl's exports in plain PyTorch: a TorchScript module and official-key safetensors.

    pip install ./python
    python examples/load_exports.py encoder.pt encoder_official.safetensors
"""

import sys

import torch

import pstl_torch


def main(torchscript, weights):
    traced = torch.jit.load(torchscript, map_location="cpu").eval()
    encoder = pstl_torch.load_encoder(weights)  # exact official keys, strict, eval mode
    x = torch.randn(2, 3, 50, 25, 2)  # (N, C, T, V, M)
    with torch.inference_mode():
        z_ts, z_ref = traced(x), encoder(x)
    print(f"torchscript {tuple(z_ts.shape)}, state_dict {tuple(z_ref.shape)}, "
          f"max abs diff {(z_ts - z_ref).abs().max().item():.2e}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
