"""Colour correction of restored images: StableSR's wavelet colour fix."""

from __future__ import annotations

import numpy as np

#: the most levels (the native kernels' dilation 1 << level must fit an int): far past any image
MAX_LEVELS = 30


def wavelet_color_fix(image: np.ndarray, reference: np.ndarray, levels: int) -> np.ndarray:
    """The restored image's detail over the LQ input's colours (StableSR's wavelet color fix).

    Diffusion restorers drift in colour on faces unlike their training data; the LQ input keeps
    the right low frequencies. Both images are split by an ``levels``-level à trous wavelet
    decomposition (a 3x3 ``[1, 2, 1]/4`` binomial blur dilated 1, 2, 4, ... pixels, edges
    replicated, as StableSR's ``wavelet_reconstruction``); the result is ``image``'s high
    frequencies plus ``reference``'s residual low frequencies. Blurring a constant gives it back,
    so a uniform colour cast of ``image`` is removed exactly.

    Args:
        image: ``float [B, C, H, W]``, the decoded restoration.
        reference: same shape, the LQ input at the model resolution.
        levels: decomposition depth; 0 returns ``image`` unchanged. The low band left after ``n``
            levels is about ``2**n`` pixels wide.

    Returns:
        ``float32 [B, C, H, W]``, a new array.
    """
    if image.shape != reference.shape or image.ndim != 4:
        raise ValueError(
            f"wavelet_color_fix: expected two [B, C, H, W] arrays of one shape, got {image.shape} and {reference.shape}"
        )
    if not 0 <= levels <= MAX_LEVELS:
        raise ValueError(f"wavelet_color_fix: levels must be in [0, {MAX_LEVELS}], got {levels}")
    x = image.astype(np.float32)
    if levels == 0:
        return x
    return x - _wavelet_low(x, levels) + _wavelet_low(reference.astype(np.float32), levels)


def _wavelet_low(x: np.ndarray, levels: int) -> np.ndarray:
    """The low band of ``levels`` à trous levels over the last two axes. A dilation past the image
    reads only its edges, so it is capped at the image's size (the same values, without padding
    2**level pixels a side)."""
    for level in range(levels):
        r = min(2**level, max(x.shape[-2:]))
        p = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
        h = 0.25 * p[..., : -2 * r] + 0.5 * p[..., r:-r] + 0.25 * p[..., 2 * r :]
        x = 0.25 * h[..., : -2 * r, :] + 0.5 * h[..., r:-r, :] + 0.25 * h[..., 2 * r :, :]
    return x
