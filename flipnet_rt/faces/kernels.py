"""The host twins of the native CUDA kernels for the device frame path (:mod:`.device`), and their arguments.

``warp_crop`` and ``paste_faces`` run the OpenCV references on the CPU: the C++ CPU kernels are
slower there (:data:`flipnet_rt.imaging.native.NATIVE_CPU`); ``border_args`` and ``affine_matrices``
are the kernels' argument conventions, shared with the CUDA calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .types import BorderMode

#: cv2's border codes for the faces' border modes (BORDER_REFLECT_101 = 4, BORDER_CONSTANT = 0).
_CV2_BORDER = {"reflect": 4, "constant": 0}


def border_args(border: object) -> tuple[int, tuple[int, int, int]]:
    """The kernels' border arguments of a :class:`~flipnet_rt.faces.types.BorderMode`: (cv2 code, fill colour)."""
    from .align import CONSTANT_BORDER
    from .types import BorderMode

    mode = BorderMode(border)
    return _CV2_BORDER[mode.value], (CONSTANT_BORDER if mode is BorderMode.CONSTANT else (0, 0, 0))


def affine_matrices(affines: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """``[N, 2, 3]`` affines as the kernels take them: C-contiguous float64, finite."""
    m = np.ascontiguousarray(np.asarray(affines, np.float64).reshape(-1, 2, 3))
    if not np.all(np.isfinite(m)):
        raise ValueError("affines: contain NaN or infinity; estimate them again from finite landmarks")
    return m


def warp_crop(
    image: np.ndarray,
    affines: Sequence[np.ndarray],
    size: int,
    border: BorderMode | str = "reflect",
    dtype: type = np.float32,
) -> np.ndarray:
    """The aligned crops of ``image`` as the engine's input (OpenCV on the CPU: see :data:`NATIVE_CPU`).

    Args:
        image: ``uint8 [H, W, 3]``.
        affines: one ``[2, 3]`` image -> crop affine per face.
        size: the crop side ``S``.
        border: a :class:`~flipnet_rt.faces.types.BorderMode` (or its value).
        dtype: ``np.float32`` or ``np.float16``.

    Returns:
        ``dtype [N, 3, S, S]`` in [-1, 1]: ``to_float(warp_faces(...))``.
    """
    from ..imaging.tensor import to_float
    from .align import warp_faces

    out_dtype = np.dtype(dtype)
    if out_dtype not in (np.float32, np.float16):
        raise ValueError(f"warp_crop: dtype must be float32 or float16, got {out_dtype}")
    _check_image(image, "warp_crop")
    mats = affine_matrices(affines)
    if len(mats) == 0:
        return np.empty((0, 3, size, size), out_dtype)
    return to_float(np.stack(warp_faces(image, list(mats), size, border))).astype(out_dtype, copy=False)


def paste_faces(
    image: np.ndarray, faces: Sequence[np.ndarray], affines: Sequence[np.ndarray], *, inplace: bool = False
) -> np.ndarray:
    """:func:`flipnet_rt.faces.paste.paste_faces` itself (OpenCV on the CPU: see :data:`NATIVE_CPU`).

    The host twin of ``paste_faces_cuda`` in :class:`~flipnet_rt.faces.device.HostKernels`.
    """
    from .paste import paste_faces as reference

    return reference(image, faces, affines, inplace=inplace)


def _check_image(image: np.ndarray, where: str) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"{where}: expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
