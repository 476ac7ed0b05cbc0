"""Images as model tensors: ``uint8 [B, H, W, 3]`` <-> ``float32 [B, 3, H, W]`` in [-1, 1]."""

from __future__ import annotations

import numpy as np


def to_float(images: np.ndarray) -> np.ndarray:
    """``uint8 [B, H, W, 3]`` images -> ``float32 [B, 3, H, W]`` in [-1, 1] (``v / 127.5 - 1``)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"to_float: expected uint8 [B, H, W, 3], got {images.dtype} {images.shape}")
    out = images.transpose(0, 3, 1, 2).astype(np.float32)
    out /= np.float32(127.5)
    out -= np.float32(1.0)
    return out


def to_uint8(x: np.ndarray) -> np.ndarray:
    """``float [B, 3, H, W]`` in [-1, 1] -> ``uint8 [B, H, W, 3]``.

    Values are mapped with ``(x + 1) * 127.5``, clipped to [0, 255] and rounded
    half to even (``np.rint``). Exact inverse of :func:`to_float` on its outputs.
    Infinities clip to black or white.

    Raises:
        ValueError: on a wrong shape or dtype, or NaN values (a numerically broken
            model output is reported rather than written as black pixels).
    """
    if x.ndim != 4 or x.shape[1] != 3 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"to_uint8: expected float [B, 3, H, W], got {x.dtype} {x.shape}")
    nans = int(np.count_nonzero(np.isnan(x)))
    if nans:
        raise ValueError(
            f"to_uint8: model output has {nans} NaN values; the model overflowed, "
            "run it at a higher precision (float32)"
        )
    work = x.astype(np.result_type(x.dtype, np.float32))
    work += 1.0
    work *= 127.5
    np.clip(work, 0.0, 255.0, out=work)
    return np.rint(work).astype(np.uint8).transpose(0, 2, 3, 1).copy()
