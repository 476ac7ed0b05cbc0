"""Tests for flipnet_rt.imaging.geometry: the size policy (fit/unfit).

Every fixture image is written in code into pytest's tmp_path.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipnet_rt.imaging.geometry import Placement, fit, unfit


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- size policy


def test_fit_square_at_resolution_passes_through() -> None:
    pixels = _noise(32, 32)
    square, placement = fit(pixels, 32)
    np.testing.assert_array_equal(square, pixels)
    assert placement == Placement(32, 32, 0, 0, 0, 0)
    restored = unfit(square, placement)
    assert restored.tobytes() == pixels.tobytes() and restored.shape == pixels.shape


@pytest.mark.parametrize(
    ("height", "width", "pads"),
    [
        (40, 40, (0, 0, 0, 0)),  # square, resized
        (40, 25, (0, 0, 7, 8)),  # portrait: pad left/right
        (25, 40, (7, 8, 0, 0)),  # landscape: pad top/bottom
        (3, 5, (1, 1, 0, 0)),  # tiny
        (1, 9, (4, 4, 0, 0)),  # one row: edge padding
        (9, 2, (0, 0, 3, 4)),  # too thin to mirror
    ],
)
def test_fit_shapes_and_padding(height: int, width: int, pads: tuple[int, int, int, int]) -> None:
    pixels = _noise(height, width)
    square, placement = fit(pixels, 32)
    assert square.shape == (32, 32, 3) and square.dtype == np.uint8
    assert (placement.pad_top, placement.pad_bottom, placement.pad_left, placement.pad_right) == pads
    assert placement.original_size == (height, width)
    restored = unfit(square, placement)
    assert restored.shape == (height, width, 3) and restored.dtype == np.uint8


def test_padding_mirrors_the_border() -> None:
    pixels = _noise(6, 4)  # pad 1 column each side
    square, placement = fit(pixels, 6)  # no resize: the square side is already 6
    assert (placement.pad_left, placement.pad_right) == (1, 1)
    np.testing.assert_array_equal(square[:, 0], pixels[:, 1])  # reflect, edge not repeated
    np.testing.assert_array_equal(square[:, -1], pixels[:, -2])
    np.testing.assert_array_equal(square[:, 1:5], pixels)
    np.testing.assert_array_equal(unfit(square, placement), pixels)


def test_thin_image_uses_edge_padding() -> None:
    pixels = _noise(1, 5)
    square, _ = fit(pixels, 5)
    for row in square:
        np.testing.assert_array_equal(row, pixels[0])


def test_unfit_at_padded_size_is_exact_crop() -> None:
    pixels = _noise(20, 12)
    square, placement = fit(pixels, 20)
    np.testing.assert_array_equal(unfit(square, placement), pixels)


def test_unfit_accepts_any_output_resolution() -> None:
    square, placement = fit(_noise(30, 18), 16)
    assert unfit(np.zeros((64, 64, 3), np.uint8), placement).shape == (30, 18, 3)


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        fit(np.zeros((4, 4, 3), np.float32), 8)
    with pytest.raises(ValueError, match="uint8"):
        fit(np.zeros((4, 4), np.uint8), 8)
    with pytest.raises(ValueError, match="resolution"):
        fit(np.zeros((4, 4, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="square"):
        unfit(np.zeros((4, 5, 3), np.uint8), Placement(4, 4, 0, 0, 0, 0))


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 48),
    width=st.integers(1, 48),
    resolution=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_fit_unfit_property(height: int, width: int, resolution: int, seed: int) -> None:
    pixels = _noise(height, width, seed)
    square, placement = fit(pixels, resolution)
    assert square.shape == (resolution, resolution, 3) and square.dtype == np.uint8
    assert placement.side == max(height, width)
    restored = unfit(square, placement)
    assert restored.shape == pixels.shape and restored.dtype == np.uint8
    if height == width == resolution:
        assert restored.tobytes() == pixels.tobytes()
    if resolution == max(height, width):  # no resampling anywhere: exact crop
        np.testing.assert_array_equal(restored, pixels)


def test_unfit_returns_a_copy_not_a_view() -> None:
    buffer = _noise(8, 8)
    square, placement = fit(buffer, 8)
    restored = unfit(square, placement)
    buffer[:] = 0  # the runtime reuses its output buffer for the next batch
    assert restored.any()
