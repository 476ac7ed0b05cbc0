"""Alignment to the FFHQ 5-point template: a similarity transform and its warp (DESIGN §6).

Pure functions over numpy arrays and OpenCV (the native kernels port them and test parity):

* :func:`template` — the FFHQ template (facexlib's values at 512 px) scaled to any side;
* :func:`estimate_affine` — the similarity transform image -> template (``cv2.estimateAffinePartial2D``,
  LMEDS, as facexlib's ``FaceRestoreHelper.align_warp_face``);
* :func:`warp_faces` — the aligned crops.

Warp semantics (what a port must reproduce):
    ``crop[y, x] = sample(image, A⁻¹ · (x, y, 1))`` for integer pixel centres ``(x, y)`` of the crop,
    ``A`` the ``[2, 3]`` image -> crop affine. ``sample`` is OpenCV's bilinear ``INTER_LINEAR``
    (coordinates quantised to 1/32 px, uint8 weights in 15-bit fixed point; float32 images are
    interpolated in float). Coordinates outside the image read the border: ``REFLECT`` is
    ``cv2.BORDER_REFLECT_101`` (``gfedcb|abcdefgh|gfedcba``, the edge pixel not repeated),
    ``CONSTANT`` is facexlib's grey ``(135, 133, 132)``. A port matches within 1 grey level (the
    fixed-point rounding), not bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .types import BorderMode

#: facexlib's FFHQ 5-point template at 512 px: left eye, right eye, nose, left/right mouth corner.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float32,
)
#: facexlib's constant border colour (RGB) for ``BorderMode.CONSTANT``.
CONSTANT_BORDER = (135, 133, 132)


def template(size: int) -> np.ndarray:
    """The FFHQ template for a crop of side ``size``: ``float32 [5, 2]`` ``(x, y)``."""
    if size < 1:
        raise ValueError(f"template: size must be >= 1, got {size}")
    return FFHQ_TEMPLATE_512 * np.float32(size / 512.0)


def estimate_affine(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The similarity transform taking ``landmarks`` onto the template of side ``size``.

    Args:
        landmarks: ``float [5, 2]`` image points in :data:`~flipnet_rt.faces.types.LANDMARK_NAMES` order.
        size: side of the aligned crop.

    Returns:
        ``float64 [2, 3]`` ``A`` with ``crop = A · (x, y, 1)``: rotation, uniform scale and
        translation only (``cv2.estimateAffinePartial2D``, LMEDS; OpenCV's LMEDS draws its subsets
        from a fixed-seed generator, so the result is deterministic). Falls back to the
        least-squares fit over all 5 points when LMEDS finds no model. Raises ``ValueError`` when
        the points all coincide (no scale or rotation can be fitted).
    """
    import cv2

    src = np.asarray(landmarks, np.float32).reshape(5, 2)
    if not np.all(np.isfinite(src)):
        raise ValueError("estimate_affine: landmarks contain NaN or infinity")
    if float(np.ptp(src, axis=0).max()) < 1e-3:
        raise ValueError("estimate_affine: the 5 landmarks are degenerate (all on one point); drop this face")
    dst = template(size)
    affine, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if affine is None:
        affine = _least_squares_similarity(src, dst)
    return affine.astype(np.float64)


def _least_squares_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``[2, 3]`` similarity minimising the squared error over all points (``[[a, -b, tx], [b, a, ty]]``)."""
    x, y = src[:, 0].astype(np.float64), src[:, 1].astype(np.float64)
    one, zero = np.ones_like(x), np.zeros_like(x)
    rows = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
    a, b, tx, ty = np.linalg.lstsq(rows, np.concatenate([dst[:, 0], dst[:, 1]]).astype(np.float64), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def affine_scale(affine: np.ndarray) -> float:
    """Crop pixels per image pixel of a similarity ``[2, 3]`` (``sqrt |det|``)."""
    a = np.asarray(affine, np.float64)
    return float(np.sqrt(abs(a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0])))


def rescale_affine(affine: np.ndarray, factor: float) -> np.ndarray:
    """The affine of the same alignment onto a crop ``factor`` times larger (``factor · A``)."""
    return np.asarray(affine, np.float64) * float(factor)


def face_extent(affine: np.ndarray, size: int) -> float:
    """How many image pixels the crop's side covers (``size / scale``): the face's own resolution."""
    return size / affine_scale(affine)


def warp_faces(
    image: np.ndarray,
    affines: Sequence[np.ndarray],
    size: int | Sequence[int],
    border: BorderMode | str = BorderMode.REFLECT,
) -> list[np.ndarray]:
    """The aligned crops of ``image``.

    Args:
        image: ``uint8`` or ``float32 [H, W, 3]``.
        affines: one ``[2, 3]`` image -> crop affine per face (:func:`estimate_affine`).
        size: the crop side, one for all or one per face.
        border: :class:`BorderMode` for coordinates outside the image.

    Returns:
        One ``[S, S, 3]`` crop per affine, of ``image``'s dtype (new arrays). See the module
        docstring for the exact sampling rule.
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype not in (np.uint8, np.float32):
        raise ValueError(f"warp_faces: expected a uint8 or float32 [H, W, 3] image, got {image.dtype} {image.shape}")
    sizes = [int(size)] * len(affines) if isinstance(size, (int, np.integer)) else [int(s) for s in size]
    if len(sizes) != len(affines):
        raise ValueError(f"warp_faces: {len(sizes)} sizes for {len(affines)} affines")
    border = BorderMode(border)
    if border is BorderMode.REFLECT:
        mode, value = cv2.BORDER_REFLECT_101, (0, 0, 0)
    else:
        mode, value = cv2.BORDER_CONSTANT, CONSTANT_BORDER
    src = np.ascontiguousarray(image)
    return [
        cv2.warpAffine(
            src, np.asarray(a, np.float64), (s, s), flags=cv2.INTER_LINEAR, borderMode=mode, borderValue=value
        )
        for a, s in zip(affines, sizes)
    ]
