"""Loading what pstl writes: encoder exports, checkpoints and hub directories."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from .model import Encoder, EncoderConfig

PREFIXES = ("encoder.", "encoder_q.", "module.")


def load_state_dict(path):
    """All tensors of a safetensors file or a `torch.save` state_dict (`.pt`)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return dict(load_file(str(path)))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict, got {type(state).__name__}")
    return dict(state)


def encoder_state(state, path="<state>"):
    """The encoder's official keys: the keys under the prefix of `data_bn.weight`."""
    anchors = sorted((k for k in state if k.endswith("data_bn.weight")), key=len)
    if not anchors:
        raise KeyError(f"{path}: no encoder weights (no `data_bn.weight` key)")
    prefix = anchors[0][: -len("data_bn.weight")]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def infer_config(state):
    """Encoder settings read off the weight shapes."""
    return EncoderConfig(
        in_channels=state["data_bn.weight"].shape[0] // state["A"].shape[-1],
        base_channels=state["st_gcn_networks.1.gcn.conv.weight"].shape[1],
        feature_dim=state["st_gcn_networks.9.gcn.conv.weight"].shape[0] // 3,
        temporal_kernel=state["st_gcn_networks.0.tcn.2.weight"].shape[2],
        edge_importance="edge_importance.0" in state,
    )


def load_encoder(path, config: EncoderConfig = None, device="cpu"):
    """An eval-mode `Encoder` from a pstl export (safetensors or `.pt`), a pstl
    checkpoint, an official `.pt` state_dict or a hub directory; loading is strict."""
    path = Path(path)
    if path.is_dir():
        return from_pretrained(path, device=device)
    state = encoder_state(load_state_dict(path), path)
    enc = Encoder(config or infer_config(state))
    enc.load_state_dict(state, strict=True)
    return enc.to(device).eval()


def from_pretrained(directory, device="cpu"):
    """Load a `pstl export --hub DIR` directory (`config.json` + `model.safetensors`).

    Returns the eval-mode encoder; its `hub_config` attribute holds config.json, and
    when the directory has a classifier, `classifier` is an `nn.Linear` with its weights.
    """
    directory = Path(directory)
    cfg = json.loads((directory / "config.json").read_text())
    state = load_file(str(directory / "model.safetensors"))
    enc_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    enc = Encoder(EncoderConfig.from_dict(cfg["encoder"]))
    enc.load_state_dict(enc_state, strict=True)
    enc.hub_config = cfg
    enc.classifier = None
    if "fc.weight" in state:
        w = state["fc.weight"]
        enc.classifier = torch.nn.Linear(w.shape[1], w.shape[0])
        enc.classifier.load_state_dict({"weight": w, "bias": state["fc.bias"]}, strict=True)
        enc.classifier.eval()
    return enc.to(device).eval()
