"""The size policy for model input: fitting any image to the model's square resolution and back.

The network restores square images at one resolution (for example 512 x 512).
An input of any other size is fitted as follows:

1. A non-square image is padded to a square whose side is its longer side. The
   padding is split evenly between the two sides (the extra pixel, if any, goes
   to the bottom or right) and mirrors the image at its border (reflection
   without repeating the edge pixel). When the image is too thin to mirror (the
   padding on one side is wider than the image minus one pixel) the edge pixels
   are repeated instead.
2. The square is resized to resolution x resolution with Lanczos filtering. A
   square image already at the resolution passes through untouched.
3. After restoration the output is resized back to the padded square size with
   Lanczos filtering and the padding is cropped off, so the restored image has
   exactly the original height and width. An image already at the resolution
   comes back without any resampling.

Faces are never stretched: the aspect ratio is kept, and the mirrored border
gives the network plausible context instead of a flat colour. Images much larger
than the resolution are restored at the resolution and upsampled back, so fine
detail beyond the resolution is not recovered (whole images: :mod:`flipnet_rt.faces`
keeps it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .io import check_rgb


@dataclass(frozen=True)
class Placement:
    """Where an original image sits inside the padded square made by :func:`fit`.

    Attributes:
        height, width: the original image size in pixels.
        pad_top, pad_bottom, pad_left, pad_right: padding added on each side;
            the padded square's side is ``max(height, width)``.
    """

    height: int
    width: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int

    @property
    def original_size(self) -> tuple[int, int]:
        """``(height, width)`` of the original image."""
        return self.height, self.width

    @property
    def side(self) -> int:
        """Side of the padded square in pixels."""
        return max(self.height, self.width)


def fit(image: np.ndarray, resolution: int) -> tuple[np.ndarray, Placement]:
    """Pad to a square with mirrored borders, then resize to the model resolution.

    Args:
        image: ``uint8 [H, W, 3]``.
        resolution: side of the model input, in pixels.

    Returns:
        ``(square, placement)``: ``square`` is ``uint8 [resolution, resolution, 3]``
        (the input array itself when it is already that size, not a copy);
        ``placement`` is what :func:`unfit` needs to undo it.
    """
    check_rgb(image, "fit")
    if resolution < 1:
        raise ValueError(f"fit: resolution must be >= 1, got {resolution}")
    height, width = image.shape[:2]
    side = max(height, width)
    pad_h, pad_w = side - height, side - width
    placement = Placement(height, width, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
    square = image
    if pad_h or pad_w:
        widths = ((placement.pad_top, placement.pad_bottom), (placement.pad_left, placement.pad_right), (0, 0))
        thin = max(placement.pad_bottom, placement.pad_right) > min(height, width) - 1
        square = np.pad(image, widths, mode="edge" if thin else "reflect")
    if side != resolution:
        square = _resize(square, resolution)
    return square, placement


def unfit(restored: np.ndarray, placement: Placement) -> np.ndarray:
    """Undo :func:`fit`: resize back to the padded square and crop the padding off.

    Args:
        restored: ``uint8 [R, R, 3]``, the restored square at any resolution R.
        placement: from the :func:`fit` call that made the model input.

    Returns:
        ``uint8 [height, width, 3]`` with the original image's size, a new array
        (never a view of ``restored``). When R equals
        the padded square's side no resampling happens, so an image that went in
        at the model resolution comes back bit for bit.
    """
    check_rgb(restored, "unfit")
    if restored.shape[0] != restored.shape[1]:
        raise ValueError(f"unfit: expected a square image, got {restored.shape[1]}x{restored.shape[0]}")
    square = restored if restored.shape[0] == placement.side else _resize(restored, placement.side)
    top, left = placement.pad_top, placement.pad_left
    # A copy, never a view: ``restored`` may be a buffer the runtime reuses for the next batch.
    return square[top : top + placement.height, left : left + placement.width].copy()


def prepare_square(image: np.ndarray, resolution: int, crop_box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Crop ``crop_box``, center-crop to a square, resize to ``resolution`` (Lanczos).

    Args:
        image: ``uint8 [H, W, 3]``.
        resolution: output side R.
        crop_box: ``(left, top, right, bottom)`` in pixels, clipped to the image
            (an empty intersection uses the whole image).

    Returns:
        ``uint8 [R, R, 3]``; faces are never stretched. The square is cut and resized
        in one Pillow call (``resize(box=...)``), so near its edges the filter reads
        the real pixels just outside the square (where the image has them) rather
        than repeating the edge.
    """
    h, w = image.shape[:2]
    left, top, right, bottom = 0, 0, w, h
    if crop_box is not None:
        x0, y0, x1, y1 = (int(v) for v in crop_box)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 > x0 and y1 > y0:
            left, top, right, bottom = x0, y0, x1, y1
    side = min(right - left, bottom - top)
    left += (right - left - side) // 2
    top += (bottom - top - side) // 2
    if side == resolution:
        return np.ascontiguousarray(image[top : top + side, left : left + side])
    pil = Image.fromarray(image)
    resized = pil.resize((resolution, resolution), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))
    return np.asarray(resized, dtype=np.uint8)


def _resize(square: np.ndarray, side: int) -> np.ndarray:
    """Lanczos-resize ``uint8 [S, S, 3]`` to ``[side, side, 3]``."""
    pil = Image.fromarray(np.ascontiguousarray(square))
    return np.asarray(pil.resize((side, side), Image.Resampling.LANCZOS), dtype=np.uint8)
