"""Deployment exports of a loaded encoder: `torch.export` programs and ONNX files.

TorchScript (`pstl export --torchscript`) is in maintenance mode in PyTorch; these are
the maintained routes.
"""

import torch


def _example(encoder, batch=2, frames=50, persons=2):
    c = encoder.config.in_channels
    return torch.randn(batch, c, frames, encoder.A.shape[-1], persons)


def export_program(encoder, frames=50, persons=2):
    """A `torch.export.ExportedProgram` of the eval-mode encoder; the batch size is free."""
    encoder = encoder.eval()
    batch = torch.export.Dim("batch", min=1)
    return torch.export.export(encoder, (_example(encoder, 2, frames, persons),),
                               dynamic_shapes=({0: batch},))


def export_onnx(encoder, path, frames=50, persons=2):
    """Write an ONNX file (dynamo exporter; needs `onnx` and `onnxscript`)."""
    encoder = encoder.eval()
    batch = torch.export.Dim("batch", min=1)
    prog = torch.onnx.export(encoder, (_example(encoder, 2, frames, persons),), dynamo=True,
                             dynamic_shapes=({0: batch},), input_names=["x"],
                             output_names=["features"])
    prog.save(str(path))
    return path
