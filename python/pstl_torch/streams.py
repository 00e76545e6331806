"""The three input streams: joint (raw), motion (frame differences), bone (child - parent)."""

import torch

from .graph import BONES_1BASED, NUM_JOINTS

STREAMS = ("joint", "motion", "bone")


def motion(x: torch.Tensor) -> torch.Tensor:
    """`x[:, :, t+1] - x[:, :, t]` along time (dim 2) of (N, C, T, V, M), last frame 0."""
    d = torch.zeros_like(x)
    d[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return d


def bone(x: torch.Tensor) -> torch.Tensor:
    """`x[child] - x[parent]` over the NTU bones (joint dim 3); the root gives 0."""
    parent = list(range(NUM_JOINTS))
    for c, p in BONES_1BASED:
        parent[c - 1] = p - 1
    return x - x[:, :, :, parent]


def apply_stream(x: torch.Tensor, stream: str) -> torch.Tensor:
    """Convert a joint batch into `stream` ('joint', 'motion' or 'bone')."""
    if stream == "joint":
        return x
    if stream == "motion":
        return motion(x)
    if stream == "bone":
        return bone(x)
    raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}")
