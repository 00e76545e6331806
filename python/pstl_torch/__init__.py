"""pstl-torch: the PyTorch side of pstl (PSTL, AAAI 2023).

The official ST-GCN encoder with the authors' state_dict keys, the Barlow Twins head,
loaders for pstl's exports, checkpoints, hub directories and HDF5 stores, the three
input streams, and torch.export / ONNX export of a loaded encoder.
"""

from .model import BarlowTwinsHead, Encoder, EncoderConfig, spatial_graph
from .streams import apply_stream, bone, motion
from .io import from_pretrained, load_encoder, load_state_dict
from .store import StoreDataset, load_store
from .export import export_onnx, export_program

__all__ = [
    "BarlowTwinsHead", "Encoder", "EncoderConfig", "spatial_graph",
    "apply_stream", "bone", "motion",
    "from_pretrained", "load_encoder", "load_state_dict",
    "StoreDataset", "load_store",
    "export_onnx", "export_program",
]
__version__ = "0.1.0"
