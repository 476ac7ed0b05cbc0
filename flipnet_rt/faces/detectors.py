"""Choose a face detector by name (``--detector``): built once, called through the interface."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from .onnx_session import CPU
from .types import FaceDetector


class DetectorKind(str, Enum):
    RETINAFACE = "retinaface"  # default: one network pass per frame, on the restorer's backend; 5 landmarks
    MTCNN = "mtcnn"  # three ONNX networks over an image pyramid; finds smaller faces, costs more on large frames
    DLIB = "dlib"  # CPU: HOG + 68-point predictor reduced to 5 points (eval extra)


DEFAULT_DETECTOR = DetectorKind.RETINAFACE


def load_detector(
    kind: DetectorKind | str = DEFAULT_DETECTOR,
    *,
    min_face_size: float = 20.0,
    thresholds: Sequence[float] | None = None,
    weights: Path | None = None,
    providers: Sequence[str] = CPU,
    threads: int = 0,
    detect_size: int | None = None,
    angles: Sequence[int] | str | None = None,
    network: Any = None,
) -> FaceDetector:
    """A ready detector.

    Args:
        kind: ``retinaface``, ``mtcnn`` or ``dlib``.
        min_face_size: MTCNN's smallest box side searched (px); RetinaFace grows small frames so
            such a face is found, within ``detect_size``; dlib upsamples once when it is below 80 px
            (HOG's window) and not otherwise.
        thresholds: MTCNN's three stage thresholds; RetinaFace's and dlib's one value (the face
            probability; the SVM margin).
        weights: MTCNN's folder of ``.onnx`` files, RetinaFace's ``.onnx`` file or dlib's 68-point
            ``.dat`` file (default: the shipped ones).
        providers: ONNX Runtime providers of the detector's own sessions, e.g.
            :func:`~flipnet_rt.faces.onnx_session.providers_like`.
        detect_size: RetinaFace's input size (the frame's longer side shrunk to it; default 1280).
        angles: clockwise angles scanned (:class:`~flipnet_rt.faces.rotations.RotatedScans`); default 0 only.
        network: RetinaFace's network call on the restorer's backend
            (:meth:`~flipnet_rt.runtime.restorer.Restorer.detector_network`); None: the ONNX file on
            ONNX Runtime.
    """
    try:
        kind = DetectorKind(kind)
    except ValueError:
        raise ValueError(f"detector: {kind!r} is not one of {', '.join(k.value for k in DetectorKind)}") from None
    if detect_size is not None and kind is not DetectorKind.RETINAFACE:
        raise ValueError(f"detect_size: applies to the retinaface detector, not {kind.value}")
    detector = _load(kind, min_face_size, thresholds, weights, providers, threads, detect_size, network)
    if angles is not None:
        from .rotations import RotatedScans, parse_angles

        if parse_angles(angles) != (0,):
            return RotatedScans(detector, parse_angles(angles))
    return detector


def _load(
    kind: DetectorKind,
    min_face_size: float,
    thresholds: Sequence[float] | None,
    weights: Path | None,
    providers: Sequence[str],
    threads: int,
    detect_size: int | None,
    network: Any,
) -> FaceDetector:
    if kind is DetectorKind.MTCNN:
        from .mtcnn import MtcnnConfig, MtcnnDetector

        extra: dict[str, Any] = {"thresholds": tuple(float(t) for t in thresholds)} if thresholds else {}
        return MtcnnDetector(
            MtcnnConfig(min_face_size=min_face_size, **extra), weights=weights, providers=providers, threads=threads
        )
    if thresholds is not None and len(thresholds) != 1:
        raise ValueError(f"thresholds: the {kind.value} detector takes one threshold, got {list(thresholds)}")
    if kind is DetectorKind.RETINAFACE:
        from .onnx_session import OnnxNet
        from .retinaface import RetinaFaceConfig, RetinaFaceDetector

        options: dict[str, Any] = {"min_face_size": min_face_size}
        if thresholds:
            options["score_threshold"] = float(thresholds[0])
        if detect_size is not None:
            options["detect_size"] = int(detect_size)
        if network is None and weights is not None:
            network = OnnxNet(Path(weights), providers, threads)
        return RetinaFaceDetector(RetinaFaceConfig(**options), network=network, providers=providers, threads=threads)
    from .dlib_detector import DlibDetector

    return DlibDetector(
        upsample=1 if min_face_size < 80 else 0, threshold=float(thresholds[0]) if thresholds else 0.0, weights=weights
    )
