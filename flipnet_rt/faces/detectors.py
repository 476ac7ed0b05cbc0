"""Choose a face detector by name (``--detector``): built once, called through the interface."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from .onnx_session import CPU
from .types import FaceDetector


class DetectorKind(str, Enum):
    MTCNN = "mtcnn"  # default: three ONNX networks on the restorer's device, 5 landmarks
    DLIB = "dlib"  # CPU: HOG + 68-point predictor reduced to 5 points (eval extra)


def load_detector(
    kind: DetectorKind | str = DetectorKind.MTCNN,
    *,
    min_face_size: float = 20.0,
    thresholds: Sequence[float] | None = None,
    weights: Path | None = None,
    providers: Sequence[str] = CPU,
    threads: int = 0,
) -> FaceDetector:
    """A ready detector.

    Args:
        kind: ``mtcnn`` or ``dlib``.
        min_face_size: MTCNN's smallest box side searched (px); dlib upsamples once when it is below
            80 px (HOG's window) and not otherwise.
        thresholds: MTCNN's three stage thresholds; for dlib one value, the SVM margin threshold.
        weights: MTCNN's folder of ``.onnx`` files or dlib's 68-point ``.dat`` file.
        providers: ONNX Runtime providers (MTCNN), e.g. :func:`~flipnet_rt.faces.onnx_session.providers_like`.
    """
    try:
        kind = DetectorKind(kind)
    except ValueError:
        raise ValueError(f"detector: {kind!r} is not one of {', '.join(k.value for k in DetectorKind)}") from None
    if kind is DetectorKind.MTCNN:
        from .mtcnn import MtcnnConfig, MtcnnDetector

        extra: dict[str, Any] = {"thresholds": tuple(float(t) for t in thresholds)} if thresholds else {}
        return MtcnnDetector(
            MtcnnConfig(min_face_size=min_face_size, **extra), weights=weights, providers=providers, threads=threads
        )
    from .dlib_detector import DlibDetector

    if thresholds is not None and len(thresholds) != 1:
        raise ValueError(f"thresholds: the dlib detector takes one SVM margin threshold, got {list(thresholds)}")
    return DlibDetector(
        upsample=1 if min_face_size < 80 else 0, threshold=float(thresholds[0]) if thresholds else 0.0, weights=weights
    )
