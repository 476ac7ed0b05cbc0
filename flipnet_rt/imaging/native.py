"""The native kernels (C++, optional CUDA) for per-face image work, and the CPU functions that use them.

DESIGN §8. The extension module ``flipnet_rt._native`` is built from ``native/`` by the top-level
``CMakeLists.txt`` when the package is installed (scikit-build-core). It holds, per kernel, a CPU
function and, in a CUDA build, its ``*_cuda`` twin on device arrays (:mod:`flipnet_rt.faces.device`):

* ``warp_u8`` — :func:`flipnet_rt.faces.align.warp_faces` on uint8 images;
* ``warp_crop`` — the same warp fused with :func:`flipnet_rt.imaging.tensor.to_float`: the
  engine's ``[N, 3, S, S]`` input in one pass, float32 or float16;
* ``paste_faces`` — :func:`flipnet_rt.faces.paste.paste_faces`;
* ``wavelet_color_fix`` — :func:`flipnet_rt.imaging.colour.wavelet_color_fix`.

Each matches its Python/OpenCV reference within 1 grey level (``tests/native/`` measures the
kernels themselves). On the CPU only the colour fix is faster than its reference, so only
:func:`wavelet_color_fix` here runs native code; the host twins of the warp and paste kernels
(:mod:`flipnet_rt.faces.kernels`) run the OpenCV references (faster than the CPU kernels, see
:data:`NATIVE_CPU`). If the module is missing
(a pure-Python install, no C++ compiler at install time) one line is logged and the colour fix
falls back to its reference. ``FLIPNET_NATIVE=0`` in the environment forces the reference (for
comparisons).
"""

from __future__ import annotations

import functools
import logging
import os
from types import ModuleType

import numpy as np

_log = logging.getLogger(__name__)

#: Kernels dispatched to the native CPU code: those benchmarks/test_bench_native.py measured faster
#: than their reference. Per face at 1080p (512-px crops, 3 faces), 2 shared CPU cores, one run of
#: ``pytest benchmarks/test_bench_native.py --benchmark-only -s`` (2026-12, load ~2.5): colour fix
#: 10.2x faster (3.5 vs 35.6 ms); warp-crop 0.47x (4.6 vs 2.1 ms), uint8 warp 0.35x (4.6 vs 1.6 ms)
#: and paste 0.29x (13.1 vs 3.8 ms) are slower than OpenCV's vectorised warpAffine / blendLinear,
#: so the CPU runs those references and nothing here calls their CPU kernels. Those stay in
#: ``native/``: the CUDA library links them (``invert_affine`` in ``native/src/warp.cpp``) and mirrors
#: their sampling (``sampling.hpp`` / ``sampling.cuh``), and ``tests/native`` checks both.
NATIVE_CPU = frozenset({"wavelet_color_fix"})


@functools.cache
def module() -> ModuleType | None:
    """``flipnet_rt._native``, or None when it is unavailable or disabled (logged once)."""
    if os.environ.get("FLIPNET_NATIVE", "1").strip().lower() in ("0", "off", "false", "no"):
        _log.info("FLIPNET_NATIVE=0: using the Python reference kernels")
        return None
    try:
        import flipnet_rt._native as _native  # (the compiled extension: no stubs)
    except ImportError as exc:
        _log.warning(
            "native kernels unavailable (%s); using the Python reference kernels "
            "(reinstall with a C++ compiler: pip install .)",
            exc,
        )
        return None
    return _native


def wavelet_color_fix(image: np.ndarray, reference: np.ndarray, levels: int) -> np.ndarray:
    """:func:`flipnet_rt.imaging.colour.wavelet_color_fix` (same arguments and result, bit for bit)."""
    from .colour import MAX_LEVELS
    from .colour import wavelet_color_fix as python_fix

    nat = module() if "wavelet_color_fix" in NATIVE_CPU else None
    if nat is None or image.shape != reference.shape or image.ndim != 4 or not 0 <= levels <= MAX_LEVELS:
        return python_fix(image, reference, levels)  # also raises its errors on bad input
    x = np.ascontiguousarray(image, np.float32)
    out = np.empty_like(x)
    nat.wavelet_color_fix(x, np.ascontiguousarray(reference, np.float32), out, int(levels))
    return out
