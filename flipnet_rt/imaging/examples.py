"""Synthetic example inputs for checks that must not depend on data files or OpenCV.

``flipnet-rt verify`` and ``flipnet-rt bench`` restore these: a face-like drawing and a fixed
Pillow degradation of it. (Quality is measured on real faces by ``flipnet-rt eval``.)
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def example_face(size: int = 256, seed: int = 0) -> np.ndarray:
    """A synthetic face-like RGB image: skin ellipse, eyes, mouth, on a gradient. ``[size, size, 3]`` uint8."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    img = np.stack([0.25 + 0.3 * yy, 0.35 + 0.2 * xx, 0.55 - 0.2 * yy], axis=-1)
    head = ((xx - 0.5) / 0.3) ** 2 + ((yy - 0.52) / 0.4) ** 2 < 1
    img[head] = (0.87, 0.68, 0.57)
    for cx in (0.39, 0.61):
        eye = ((xx - cx) / 0.06) ** 2 + ((yy - 0.45) / 0.03) ** 2 < 1
        img[eye] = (0.15, 0.1, 0.08)
    mouth = ((xx - 0.5) / 0.11) ** 2 + ((yy - 0.7) / 0.025) ** 2 < 1
    img[mouth] = (0.65, 0.3, 0.3)
    noise = np.random.default_rng(seed).normal(0, 0.02, img.shape)
    return (np.clip(img + noise, 0, 1) * 255).round().astype(np.uint8)


def degrade_example(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """Blur, downsample x4, noise, JPEG q=30, upsample: a fixed classical degradation (Eq. 9 style)."""
    h, w = image.shape[:2]
    small = (
        Image.fromarray(image).filter(ImageFilter.GaussianBlur(2.0)).resize((w // 4, h // 4), Image.Resampling.BICUBIC)
    )
    arr = np.asarray(small).astype(np.float64) + np.random.default_rng(seed).normal(0, 6, (h // 4, w // 4, 3))
    noisy = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))
    buffer = io.BytesIO()
    noisy.save(buffer, format="JPEG", quality=30)
    return np.asarray(Image.open(buffer).convert("RGB").resize((w, h), Image.Resampling.BICUBIC))
