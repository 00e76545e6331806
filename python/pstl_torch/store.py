"""pstl's HDF5 store (`train/` and `test/` groups with `x`, `y`, `name`) in NumPy/PyTorch."""

import numpy as np
import torch


def _h5py():
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("load_store needs h5py: pip install 'pstl-torch[store]'") from e
    return h5py


def load_store(path, splits=("train", "test")):
    """`{"attrs": {...}, split: {"x": (N, 3, T, V, M) float32, "y": int64, "name": [str]}}`."""
    h5py = _h5py()
    out = {}
    with h5py.File(path, "r") as f:
        out["attrs"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        for s in splits:
            g = f[s]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in g["name"][()]]
            out[s] = {"x": np.asarray(g["x"][()], dtype=np.float32),
                      "y": np.asarray(g["y"][()], dtype=np.int64), "name": names}
    return out


class StoreDataset(torch.utils.data.Dataset):
    """One split of a store as `(x, y)` pairs, read lazily per sample.

    `transform` (e.g. `pstl_torch.bone` applied per sample via a lambda) is applied to x.
    """

    def __init__(self, path, split="train", transform=None):
        self.path, self.split, self.transform = str(path), split, transform
        with _h5py().File(self.path, "r") as f:
            self.y = np.asarray(f[split]["y"][()], dtype=np.int64)
        self._file = None

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        if self._file is None:  # opened per worker process
            self._file = _h5py().File(self.path, "r")
        x = torch.from_numpy(np.asarray(self._file[self.split]["x"][i], dtype=np.float32))
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.y[i])
