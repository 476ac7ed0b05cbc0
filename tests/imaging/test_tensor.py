"""Tests for flipnet_rt.imaging.tensor: uint8 images <-> float model tensors.

Every fixture image is written in code into pytest's tmp_path.
"""

from __future__ import annotations

import numpy as np
import pytest

from flipnet_rt.imaging.tensor import to_float, to_uint8


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- model tensors


def test_to_float_layout_and_range() -> None:
    batch = np.stack([_noise(5, 7, 1), _noise(5, 7, 2)])
    batch[0, 0, 0] = (0, 255, 128)
    x = to_float(batch)
    assert x.shape == (2, 3, 5, 7) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert x[0, 0, 0, 0] == -1.0 and x[0, 1, 0, 0] == 1.0
    np.testing.assert_allclose(x[1, 2], batch[1, ..., 2] / 127.5 - 1.0, atol=1e-6)


def test_uint8_float_round_trip_is_exact() -> None:
    every_value = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    np.testing.assert_array_equal(to_uint8(to_float(every_value)), every_value)
    batch = np.stack([_noise(9, 4, s) for s in range(3)])
    np.testing.assert_array_equal(to_uint8(to_float(batch)), batch)
    np.testing.assert_array_equal(to_uint8(to_float(batch).astype(np.float16)), batch)
    np.testing.assert_array_equal(to_uint8(to_float(batch).astype(np.float64)), batch)


def test_to_uint8_clips() -> None:
    x = np.array([-5.0, -1.0, 1.0, 7.0, np.inf, -np.inf], dtype=np.float32).reshape(1, 1, 1, 6)
    x = np.repeat(x, 3, axis=1)
    np.testing.assert_array_equal(to_uint8(x)[0, 0, :, 0], [0, 0, 255, 255, 255, 0])


def test_to_uint8_rounds_half_to_even() -> None:
    # Pick k where (x + 1) * 127.5 lands exactly on k + 0.5 in float64 arithmetic.
    halves = []
    for k in range(255):
        x = (k + 0.5) / 127.5 - 1.0
        if (x + 1.0) * 127.5 == k + 0.5:
            halves.append((x, k))
    assert len(halves) > 50
    xs = np.array([x for x, _ in halves], dtype=np.float64).reshape(1, 1, 1, -1).repeat(3, axis=1)
    expected = [k if k % 2 == 0 else k + 1 for _, k in halves]
    np.testing.assert_array_equal(to_uint8(xs)[0, 0, :, 0], expected)


def test_tensor_conversions_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        to_float(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        to_uint8(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(np.full((1, 3, 2, 2), np.nan, np.float32))
