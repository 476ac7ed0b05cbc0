"""Tests for flipnet_rt.imaging.colour: the wavelet colour fix against StableSR's formulation.

Every fixture image is written in code into pytest's tmp_path.
"""

from __future__ import annotations

import numpy as np
import pytest

from flipnet_rt.imaging.colour import wavelet_color_fix
from flipnet_rt.imaging.tensor import to_float


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- wavelet colour fix


def _stablesr_wavelet_reconstruction(content: np.ndarray, style: np.ndarray, levels: int) -> np.ndarray:
    """StableSR's ``wavelet_reconstruction`` (``colorfix.py``) in torch: dilated 3x3 conv2d, replicate pad."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=torch.float64) / 16
    kernel = kernel[None, None].repeat(3, 1, 1, 1)

    def decompose(image):
        high = torch.zeros_like(image)
        for i in range(levels):
            r = 2**i
            low = F.conv2d(F.pad(image, (r, r, r, r), mode="replicate"), kernel, groups=3, dilation=r)
            high += image - low
            image = low
        return high, image

    high, _ = decompose(torch.from_numpy(content.astype(np.float64)))
    _, low = decompose(torch.from_numpy(style.astype(np.float64)))
    return (high + low).numpy()


@pytest.mark.parametrize("levels", [1, 3, 5])
def test_color_fix_matches_stablesr(levels: int) -> None:
    content = to_float(np.stack([_noise(40, 40, 1), _noise(40, 40, 2)]))
    style = to_float(np.stack([_noise(40, 40, 3), _noise(40, 40, 4)]))
    ours = wavelet_color_fix(content, style, levels)
    err = np.abs(ours - _stablesr_wavelet_reconstruction(content, style, levels)).max()
    print(f"levels {levels}: max |ours - StableSR (float64)| = {err:.2e}")
    assert ours.dtype == np.float32 and ours.shape == content.shape
    assert err < 1e-5  # float32 sums of O(1) values


def test_color_fix_removes_a_uniform_cast_and_keeps_detail() -> None:
    ref = to_float(np.stack([_noise(32, 32, 5)]))
    cast = ref + np.array([0.2, -0.1, 0.05], dtype=np.float32)[None, :, None, None]
    assert np.abs(wavelet_color_fix(cast, ref, 3) - ref).max() < 1e-5  # the blur of a constant is itself
    assert np.abs(wavelet_color_fix(ref, ref, 5) - ref).max() < 1e-5  # high + low gives the image back
    assert np.array_equal(wavelet_color_fix(cast, ref, 0), cast)


def test_color_fix_rejects_mismatched_inputs() -> None:
    x = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match="one shape"):
        wavelet_color_fix(x, x[:, :, :4], 2)
    for levels in (-1, 31):
        with pytest.raises(ValueError, match=rf"levels must be in \[0, 30\], got {levels}"):
            wavelet_color_fix(x, x, levels)


def test_color_fix_levels_wider_than_the_image_stay_cheap() -> None:
    """A dilation past the image's size reads only its edges: padded to the image's size, not 2**level
    (30 levels padded 2**29 pixels a side, a memory error); the result is the same."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.5, (1, 3, 6, 5)).astype(np.float32)
    y = rng.normal(0, 0.5, x.shape).astype(np.float32)
    out = wavelet_color_fix(x, y, 30)
    assert out.shape == x.shape and np.isfinite(out).all()

    def low(a, levels):  # StableSR's formula as written: padded 2**level pixels a side
        for level in range(levels):
            r = 2**level
            p = np.pad(a, ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
            h = 0.25 * p[..., : -2 * r] + 0.5 * p[..., r:-r] + 0.25 * p[..., 2 * r :]
            a = 0.25 * h[..., : -2 * r, :] + 0.5 * h[..., r:-r, :] + 0.25 * h[..., 2 * r :, :]
        return a

    for levels in (3, 6):  # dilations up to 4 (inside the image) and up to 32 (past it)
        np.testing.assert_array_equal(wavelet_color_fix(x, y, levels), x - low(x, levels) + low(y, levels))
