"""PSTL's ST-GCN encoder (1/4 width) and Barlow Twins head, with the authors' keys.

Written from the method notes (shared/pstl-method.md), not copied from the authors'
code. State_dict keys: `A`, `data_bn.*`, `edge_importance.{i}`,
`st_gcn_networks.{i}.gcn.conv.*`, `st_gcn_networks.{i}.tcn.{0,2,3}.*`,
`st_gcn_networks.{i}.residual.{0,1}.*`; head: `projector.{0,1,3,4,6}.*`, `bn.*`.
"""

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from .graph import NUM_JOINTS, spatial_graph


@dataclass
class EncoderConfig:
    """The `[model]` keys of a pstl config that shape the encoder."""

    in_channels: int = 3
    base_channels: int = 16
    feature_dim: int = 256
    dropout: float = 0.5
    temporal_kernel: int = 9
    edge_importance: bool = True

    @classmethod
    def from_dict(cls, d):
        """Build from a dict, ignoring keys that are not encoder settings."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self):
        return asdict(self)

    def blocks(self):
        """(in, out, stride, residual) of the ten blocks."""
        c = self.base_channels
        return [(self.in_channels, c, 1, False), (c, c, 1, True), (c, c, 1, True),
                (c, c, 1, True), (c, 2 * c, 2, True), (2 * c, 2 * c, 1, True),
                (2 * c, 2 * c, 1, True), (2 * c, 4 * c, 2, True), (4 * c, 4 * c, 1, True),
                (4 * c, self.feature_dim, 1, True)]


class GraphConv(nn.Module):
    """1x1 conv to K*out channels, then a sum over the K partitions with the adjacency."""

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

    def __init__(self, c_in, c_out, stride, dropout, residual, kernel=9):
        super().__init__()
        self.gcn = GraphConv(c_in, c_out)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, (kernel, 1), (stride, 1), ((kernel - 1) // 2, 0)),
            nn.BatchNorm2d(c_out), nn.Dropout(dropout))
        if not residual:
            self.residual = None
        elif c_in == c_out and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, (stride, 1)), nn.BatchNorm2d(c_out))

    def forward(self, x, a):
        y = self.tcn(self.gcn(x, a))
        if self.residual is not None:
            y = y + self.residual(x)
        return torch.relu(y)


class Encoder(nn.Module):
    """ST-GCN at 1/4 width: (N, C, T, V, M) -> (N, feature_dim), persons averaged.

    `forward(x, drop_joints=None)` removes the given 0-based joints after `data_bn` and
    from every adjacency, as PSTL's central spatial masking does (removed, not zeroed).
    """

    def __init__(self, config: EncoderConfig = None):
        super().__init__()
        self.config = config or EncoderConfig()
        cfg = self.config
        self.register_buffer("A", spatial_graph())
        self.data_bn = nn.BatchNorm1d(cfg.in_channels * NUM_JOINTS)
        self.st_gcn_networks = nn.ModuleList(
            Block(ci, co, s, 0.0 if i == 0 else cfg.dropout, res, cfg.temporal_kernel)
            for i, (ci, co, s, res) in enumerate(cfg.blocks()))
        if cfg.edge_importance:
            self.edge_importance = nn.ParameterList(
                nn.Parameter(torch.ones_like(self.A)) for _ in self.st_gcn_networks)
        else:
            self.edge_importance = [1.0] * len(self.st_gcn_networks)

    def forward(self, x, drop_joints=None):
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        a = self.A
        importance = list(self.edge_importance)
        if drop_joints:
            drop = {int(j) for j in drop_joints}
            keep = torch.tensor([j for j in range(v) if j not in drop], device=x.device)
            x = x[..., keep]
            a = a[:, keep][:, :, keep]
            importance = [w if isinstance(w, float) else w[:, keep][:, :, keep]
                          for w in importance]
        for block, w in zip(self.st_gcn_networks, importance):
            x = block(x, a * w)
        return x.mean(dim=(2, 3)).view(n, m, -1).mean(dim=1)


class BarlowTwinsHead(nn.Module):
    """Projector (Linear, BN, ReLU, Linear, BN, ReLU, Linear) and the non-affine `bn`."""

    def __init__(self, in_dim=256, dim=6144):
        super().__init__()
        self.projector = nn.Sequential(
            nn.Linear(in_dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
            nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
            nn.Linear(dim, dim, bias=False))
        self.bn = nn.BatchNorm1d(dim, affine=False)

    def forward(self, f):
        """`bn(projector(f))`, the normalised embedding of the loss."""
        return self.bn(self.projector(f))

    @staticmethod
    def loss(a, b, lambd=2e-4):
        """Barlow Twins loss of two normalised embeddings (N, D); c is divided by N."""
        c = a.T @ b / a.shape[0]
        diag = torch.diagonal(c)
        off = c.pow(2).sum() - diag.pow(2).sum()
        return (diag - 1).pow(2).sum() + lambd * off
