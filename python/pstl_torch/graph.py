"""The NTU 25-joint skeleton: bones and the ST-GCN "spatial" partition graph."""

import numpy as np
import torch

NUM_JOINTS = 25
CENTER = 20
# (child, parent), 1-based NTU bones; (21, 21) is the root's self pair and adds no edge.
BONES_1BASED = [
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21),
    (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1),
    (18, 17), (19, 18), (20, 19), (21, 21), (22, 23), (23, 8), (24, 25), (25, 12),
]


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
    dj, di = to_center[:, None], to_center[None, :]
    near = hop == 1
    root0 = np.where(hop == 0, normed, 0)
    root1_close = np.where(near & (dj >= di), normed, 0)
    further = np.where(near & (dj < di), normed, 0)
    return torch.tensor(np.stack([root0, root1_close, further]), dtype=torch.float32)
