"""Test helpers importable from every test module (tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import numpy as np


def face_like(size: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic RGB uint8 image ``[size, size, 3]`` (an ellipse on a gradient, plus noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    face = ((xx - 0.5) / 0.32) ** 2 + ((yy - 0.5) / 0.42) ** 2 < 1.0
    base = np.stack([0.3 + 0.4 * xx, 0.3 + 0.3 * yy, 0.5 - 0.2 * xx], axis=-1)
    skin = np.array([0.85, 0.65, 0.55])
    img = np.where(face[..., None], skin, base) + rng.normal(0, 0.03, (size, size, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
