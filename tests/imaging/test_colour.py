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
    with pytest.raises(ValueError, match="levels must be >= 0"):
        wavelet_color_fix(x, x, -1)
