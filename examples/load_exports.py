"""Load pstl's exports in plain PyTorch: a TorchScript module and official-key safetensors.

    python examples/load_exports.py encoder.pt encoder_official.safetensors
"""

import pathlib
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "python"))
from stgcn_ref import build_encoder  # noqa: E402


def main(torchscript, weights):
    traced = torch.jit.load(torchscript, map_location="cpu").eval()
    encoder = build_encoder()
    encoder.load_state_dict(load_file(weights), strict=True)  # exact official keys
    encoder.eval()
    x = torch.randn(2, 3, 50, 25, 2)  # (N, C, T, V, M)
    with torch.inference_mode():
        z_ts, z_ref = traced(x), encoder(x)
    print(f"torchscript {tuple(z_ts.shape)}, state_dict {tuple(z_ref.shape)}, "
          f"max abs diff {(z_ts - z_ref).abs().max().item():.2e}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
