"""The native kernels (C++, optional CUDA) for per-face image work, with the Python reference as fallback.

DESIGN §8. The extension module ``flipnet_rt._native`` is built from ``native/`` by the top-level
``CMakeLists.txt`` when the package is installed (scikit-build-core). Each function here has the
signature of the Python/OpenCV reference it replaces and returns the same result within 1 grey
level (``tests/native/`` measures it):

* :func:`warp_faces` — :func:`flipnet_rt.faces.align.warp_faces` (uint8 images);
* :func:`warp_crop` — the same warp fused with :func:`flipnet_rt.imaging.tensor.to_float`: the
  engine's ``[N, 3, S, S]`` input in one pass, float32 or float16;
* :func:`paste_faces` — :func:`flipnet_rt.faces.paste.paste_faces`;
* :func:`wavelet_color_fix` — :func:`flipnet_rt.imaging.colour.wavelet_color_fix`.

Dispatch is chosen once: a kernel runs natively when the module imports and the kernel is in
:data:`NATIVE_CPU`, the set ``benchmarks/test_bench_native.py`` showed faster than its reference
on the CPU; otherwise the reference runs. If the module is missing (a pure-Python install, no C++
compiler at install time) one line is logged and every function falls back. ``FLIPNET_NATIVE=0``
in the environment forces the references (for comparisons).
"""

from __future__ import annotations

import functools
import logging
import os
from types import ModuleType
from typing import Sequence

import numpy as np

_log = logging.getLogger(__name__)

#: Kernels dispatched to the native CPU code: those benchmarks/test_bench_native.py measured faster
#: than their reference. Per face at 1080p (512-px crops, 3 faces), 2 shared CPU cores, one run of
#: ``pytest benchmarks/test_bench_native.py --benchmark-only -s``: colour fix 10.9x faster (17.9 vs
#: 195.6 ms); crop 0.74x (12.6 vs 9.4 ms) and paste 0.91x (25.4 vs 23.1 ms) are slower than
#: OpenCV's vectorised warpAffine / blendLinear, so those two keep the reference on the CPU (their
#: native kernels stay for parity and for the CUDA twins, which take raw device pointers).
NATIVE_CPU = frozenset({"wavelet_color_fix"})

#: cv2's border codes for the faces' border modes (BORDER_REFLECT_101 = 4, BORDER_CONSTANT = 0).
_CV2_BORDER = {"reflect": 4, "constant": 0}


@functools.cache
def module() -> ModuleType | None:
    """``flipnet_rt._native``, or None when it is unavailable or disabled (logged once)."""
    if os.environ.get("FLIPNET_NATIVE", "1").strip().lower() in ("0", "off", "false", "no"):
        _log.info("FLIPNET_NATIVE=0: using the Python reference kernels")
        return None
    try:
        from flipnet_rt import _native
    except ImportError as exc:
        _log.warning("native kernels unavailable (%s); using the Python reference kernels "
                     "(reinstall with a C++ compiler: pip install .)", exc)
        return None
    return _native


def uses_native(kernel: str) -> bool:
    """Whether ``kernel`` (a name in :data:`NATIVE_CPU`) runs natively here."""
    return kernel in NATIVE_CPU and module() is not None


def border_args(border: object) -> tuple[int, tuple[int, int, int]]:
    """The kernels' border arguments of a :class:`~flipnet_rt.faces.types.BorderMode`: (cv2 code, fill colour)."""
    from .faces.align import CONSTANT_BORDER
    from .faces.types import BorderMode

    mode = BorderMode(border)
    return _CV2_BORDER[mode.value], (CONSTANT_BORDER if mode is BorderMode.CONSTANT else (0, 0, 0))


def affine_matrices(affines: Sequence[np.ndarray]) -> np.ndarray:
    """``[N, 2, 3]`` affines as the kernels take them: C-contiguous float64, finite."""
    m = np.ascontiguousarray(np.asarray(affines, np.float64).reshape(-1, 2, 3))
    if not np.all(np.isfinite(m)):
        raise ValueError("affines: contain NaN or infinity; estimate them again from finite landmarks")
    return m


def warp_crop(image: np.ndarray, affines: Sequence[np.ndarray], size: int, border: object = "reflect",
              dtype: type = np.float32) -> np.ndarray:
    """The aligned crops of ``image`` as the engine's input.

    Args:
        image: ``uint8 [H, W, 3]``.
        affines: one ``[2, 3]`` image -> crop affine per face.
        size: the crop side ``S``.
        border: a :class:`~flipnet_rt.faces.types.BorderMode` (or its value).
        dtype: ``np.float32`` or ``np.float16``.

    Returns:
        ``dtype [N, 3, S, S]`` in [-1, 1]: ``to_float(warp_faces(...))`` (the same values).
    """
    out_dtype = np.dtype(dtype)
    if out_dtype not in (np.float32, np.float16):
        raise ValueError(f"warp_crop: dtype must be float32 or float16, got {out_dtype}")
    _check_image(image, "warp_crop")
    mats = affine_matrices(affines)
    nat = module() if "warp_crop" in NATIVE_CPU else None
    if nat is None or len(mats) == 0:
        from .faces.align import warp_faces as reference
        from .imaging.tensor import to_float

        if len(mats) == 0:
            return np.empty((0, 3, size, size), out_dtype)
        return to_float(np.stack(reference(image, list(mats), size, border))).astype(out_dtype, copy=False)
    code, value = border_args(border)
    out = np.empty((len(mats), 3, size, size), out_dtype)
    nat.warp_crop(np.ascontiguousarray(image), mats, out, code, value)
    return out


def warp_faces(image: np.ndarray, affines: Sequence[np.ndarray], size: int | Sequence[int],
               border: object = "reflect") -> list[np.ndarray]:
    """:func:`flipnet_rt.faces.align.warp_faces` (same arguments and result); native for uint8 images."""
    from .faces.align import warp_faces as reference

    nat = module() if "warp_faces" in NATIVE_CPU else None
    if nat is None or image.dtype != np.uint8 or not isinstance(size, (int, np.integer)) or len(affines) == 0:
        return reference(image, affines, size, border)
    _check_image(image, "warp_faces")
    mats = affine_matrices(affines)
    code, value = border_args(border)
    out = np.empty((len(mats), int(size), int(size), 3), np.uint8)
    nat.warp_u8(np.ascontiguousarray(image), mats, out, code, value)
    return list(out)


def paste_faces(image: np.ndarray, faces: Sequence[np.ndarray], affines: Sequence[np.ndarray], *,
                inplace: bool = False) -> np.ndarray:
    """:func:`flipnet_rt.faces.paste.paste_faces` (same arguments and result, within 1 grey level)."""
    from .faces.paste import paste_faces as reference

    nat = module() if "paste_faces" in NATIVE_CPU else None
    if nat is None:
        return reference(image, faces, affines, inplace=inplace)
    _check_image(image, "paste_faces")
    if len(faces) != len(affines):
        raise ValueError(f"paste_faces: {len(faces)} faces for {len(affines)} affines")
    if not image.flags.c_contiguous and inplace:
        return reference(image, faces, affines, inplace=inplace)
    out = image if inplace else np.ascontiguousarray(image).copy()
    mats = affine_matrices(affines) if len(affines) else np.empty((0, 2, 3))
    start = 0
    while start < len(faces):  # runs of one crop size, in paste order
        size = faces[start].shape[0]
        stop = start
        while stop < len(faces) and faces[stop].shape[0] == size:
            face = faces[stop]
            if face.dtype != np.uint8 or face.shape != (size, size, 3):
                raise ValueError(f"paste_faces: expected uint8 [S, S, 3] faces, got {face.dtype} {face.shape}")
            stop += 1
        nat.paste_faces(out, np.ascontiguousarray(np.stack(faces[start:stop])), mats[start:stop])
        start = stop
    return out


def wavelet_color_fix(image: np.ndarray, reference: np.ndarray, levels: int) -> np.ndarray:
    """:func:`flipnet_rt.imaging.colour.wavelet_color_fix` (same arguments and result, bit for bit)."""
    from .imaging.colour import MAX_LEVELS, wavelet_color_fix as python_fix

    nat = module() if "wavelet_color_fix" in NATIVE_CPU else None
    if nat is None or image.shape != reference.shape or image.ndim != 4 or not 0 <= levels <= MAX_LEVELS:
        return python_fix(image, reference, levels)  # also raises its errors on bad input
    x = np.ascontiguousarray(image, np.float32)
    out = np.empty_like(x)
    nat.wavelet_color_fix(x, np.ascontiguousarray(reference, np.float32), out, int(levels))
    return out


def _check_image(image: np.ndarray, where: str) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"{where}: expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
