"""Writes the seed corpus of the reader fuzz tests (tests/it/fuzz.rs) with real NumPy,
pickle and PyTorch: `.venv/bin/python tests/fuzz-corpus/make_corpus.py`."""
import collections
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
rng = np.random.default_rng(1)
np.save(out / "x_f4.npy", rng.standard_normal((2, 3, 4, 25, 2)).astype(np.float32))
np.save(out / "y_i8.npy", np.arange(5, dtype=np.int64))
np.save(out / "x_f8.npy", rng.standard_normal((3, 2)))
names = ["S001C001P001R001A001", "S001C001P001R001A002"]
for proto in (0, 2, 4, 5):
    with open(out / f"labels_p{proto}.pkl", "wb") as f:
        pickle.dump((names, [0, 1]), f, protocol=proto)
with open(out / "labels_numpy.pkl", "wb") as f:
    pickle.dump((names, np.array([3, 4], dtype=np.int64)), f, protocol=2)
sd = collections.OrderedDict(
    [("w", torch.arange(6, dtype=torch.float32).view(2, 3)), ("n", torch.tensor(3))]
)
torch.save(sd, out / "state_dict.pt")
torch.save(sd, out / "state_dict_p2.pt", pickle_protocol=2)
