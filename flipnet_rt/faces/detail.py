"""Never blurrier than the input: keep the input's detail above the model's band.

A model restores at its own resolution R. A face whose aligned crop covers S > R image pixels is
warped at S (so nothing is lost before the model), shrunk to R for the model, and its restoration
comes back at S in one of two ways:

* :func:`upsample_restored` (keep-detail off): the restoration resized to S — the input's detail
  above R's band is gone;
* :func:`keep_detail` (on): a two-level Laplacian pyramid, ``out = input + up(restored − down(input))``:
  the model replaces the band it sees (everything ``down``/``up`` keeps) and the input's residual
  ``input − up(down(input))`` above it stays. With an identity model the output is the input.

``down`` is ``cv2.resize(INTER_AREA)`` (the model input is made with it too), ``up`` is
``cv2.resize(INTER_CUBIC)`` in float32; the result is rounded half to even and clipped to uint8.
"""

from __future__ import annotations

import numpy as np

#: Default size ratio S / R from which keep-detail is used. Measured on the 300 lfw/val faces
#: (box 50,45,200,195) resized to S, degraded at S, restored by the 64-px demo engine; mean
#: PSNR dB / SSIM against the HQ at S, keep-detail vs without:
#:
#: ========  ===========================  ===========================
#: S (S/R)   mild (blur 1.2, noise 3, q70)  training degradation (Eq. 9)
#: ========  ===========================  ===========================
#: 80 (1.25)  24.39/0.7377 vs 24.18/0.7271  21.69/0.5948 vs 21.71/0.5991
#: 96 (1.50)  24.39/0.7160 vs 24.16/0.7032  21.52/0.5693 vs 21.55/0.5753
#: 150 (2.34) 24.59/0.7044 vs 24.14/0.6745  21.03/0.5466 vs 21.08/0.5599
#: ========  ===========================  ===========================
#:
#: On mild inputs (large faces in real photos usually are) keeping the input's detail wins at every
#: ratio measured, and more the larger the face; on the training degradation's heavy noise and JPEG
#: it costs 0.02-0.05 dB (the input's top band is then noise). Below ~1.25 the kept band is thin and
#: the two differ little, so the default starts there; ``--no-keep-detail`` turns it off.
KEEP_DETAIL_RATIO = 1.25


def downsample(crop: np.ndarray, size: int) -> np.ndarray:
    """``uint8 [S, S, 3]`` -> ``uint8 [size, size, 3]`` (``INTER_AREA``; the input itself when S == size)."""
    import cv2

    if crop.shape[0] == size and crop.shape[1] == size:
        return crop
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def _up(x: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if x.shape[0] == size and x.shape[1] == size:
        return x
    return cv2.resize(x, (size, size), interpolation=cv2.INTER_CUBIC)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def upsample_restored(restored: np.ndarray, size: int) -> np.ndarray:
    """``uint8 [R, R, 3]`` -> ``uint8 [size, size, 3]`` (bicubic in float32)."""
    if restored.shape[0] == size:
        return restored
    return _to_uint8(_up(restored.astype(np.float32), size))


def keep_detail(crop: np.ndarray, restored: np.ndarray, model_input: np.ndarray | None = None) -> np.ndarray:
    """The restoration at the crop's own size with the crop's detail above the model's band.

    Args:
        crop: ``uint8 [S, S, 3]``, the aligned input at its own resolution.
        restored: ``uint8 [R, R, 3]``, the model's output for ``model_input``.
        model_input: ``uint8 [R, R, 3]``, ``downsample(crop, R)`` (recomputed when None).

    Returns:
        ``uint8 [S, S, 3]``: ``crop + up(restored − model_input)``.
    """
    size, res = crop.shape[0], restored.shape[0]
    if model_input is None:
        model_input = downsample(crop, res)
    if model_input.shape != restored.shape:
        raise ValueError(f"keep_detail: model input {model_input.shape} and restored {restored.shape} differ")
    if size == res:
        return restored
    delta = restored.astype(np.float32) - model_input.astype(np.float32)
    return _to_uint8(crop.astype(np.float32) + _up(delta, size))
