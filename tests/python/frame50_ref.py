"""Independent NumPy reference of AimCLR's frame-50 normalisation (method file section 6).

Usage: frame50_ref.py IN.npy OUT.npy [FRAMES]

IN is one raw sample (3, T, 25, 2) float32 (zero-padded frames allowed); OUT receives
(3, FRAMES, 25, 2) float32. Written from the method file's text, vectorised over joints
and persons, as a cross-check of src/data/normalize.rs (which loops per element).
"""
import sys

import numpy as np


def resize_linear_time(x, out_len):
    """OpenCV INTER_LINEAR along axis 1 of (C, L, V, M): half-pixel centres, edge clamp."""
    length = x.shape[1]
    src = (np.arange(out_len, dtype=np.float64) + 0.5) * (length / out_len) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.floor(src).astype(np.int64)
    frac = src - i0
    at_end = i0 >= length - 1
    i0 = np.where(at_end, length - 1, i0)
    frac = np.where(at_end, 0.0, frac)
    i1 = np.minimum(i0 + 1, length - 1)
    w = frac[None, :, None, None]
    return x[:, i0] * (1.0 - w) + x[:, i1] * w


def frame50(sample, out_len=50):
    x = sample.astype(np.float64)  # (C, T, V, M)
    # 1. valid length: count of frames whose person-0 joint-0 xyz is not all zero.
    valid = int(np.sum(np.any(x[:, :, 0, 0] != 0, axis=0)))
    if valid == 0:
        return np.zeros((3, out_len, 25, 2), dtype=np.float32)
    # 2. centre on joint 20 per frame and person.
    x = x - x[:, :, 20:21, :]
    # 3. resize frames [0, L) to out_len.
    x = resize_linear_time(x[:, :valid], out_len)
    # 4. rotation about y per person and frame.
    out = np.empty_like(x)
    for m in range(x.shape[3]):
        vec = x[:, :, 8, m] - x[:, :, 4, m]  # (3, T)
        vec[1] = 0.0
        norm = np.linalg.norm(vec, axis=0)
        theta = np.degrees(np.arccos(vec[0] / (norm + 1e-4)))
        if np.sum(vec[2]) >= 0:
            theta = -theta
        rad = np.radians(theta)
        c, s = np.cos(rad), np.sin(rad)
        rot = np.zeros((x.shape[1], 3, 3))
        rot[:, 0, 0], rot[:, 0, 2] = c, -s
        rot[:, 1, 1] = 1.0
        rot[:, 2, 0], rot[:, 2, 2] = s, c
        # joints (T, V, 3) -> R_t @ p for every joint.
        pts = np.transpose(x[:, :, :, m], (1, 2, 0))
        out[:, :, :, m] = np.transpose(np.einsum("tij,tvj->tvi", rot, pts), (2, 0, 1))
    return out.astype(np.float32)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    frames = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    np.save(dst, frame50(np.load(src), frames))


if __name__ == "__main__":
    main()
