"""dlib's HOG face detector with the 68-point shape predictor reduced to the 5 FFHQ points.

Weights: ``shape_predictor_68_face_landmarks.dat`` from the ``face-recognition-models`` package
(``eval`` extra, with ``dlib-bin``); nothing downloads. dlib's own 5-point model marks eye
*corners*, which do not fit the FFHQ template's eye *centres*, so the 68-point model is used:
eye centres are the means of points 36-41 and 42-47, the nose tip is point 30, the mouth corners
48 and 54 (iBUG 300-W numbering, 0-based).

The HOG detector has no probability; :attr:`Face.score` is ``1 / (1 + exp(-margin))`` of its SVM
margin (0.5 at dlib's default threshold of 0). CPU only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .types import Face, sort_faces

PREDICTOR = "shape_predictor_68_face_landmarks.dat"
INSTALL_HINT = "pip install 'flipnet-rt[eval]' (dlib-bin and face-recognition-models)"


def predictor_path(weights: Path | None = None) -> Path:
    """``weights`` or the 68-point predictor inside ``face_recognition_models`` (found without
    importing it: its ``__init__`` needs ``pkg_resources``)."""
    if weights is None:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"dlib detector: face-recognition-models is not installed; {INSTALL_HINT}")
        weights = Path(list(spec.submodule_search_locations)[0]) / "models" / PREDICTOR
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; {INSTALL_HINT} or pass the path of {PREDICTOR}")
    return path


def five_points(parts: np.ndarray) -> np.ndarray:
    """68 iBUG points ``[68, 2]`` -> the 5 FFHQ points ``float32 [5, 2]``."""
    p = np.asarray(parts, np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"five_points: expected [68, 2] points, got {p.shape}")
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]).astype(np.float32)


class DlibDetector:
    """HOG + 68-point landmarks, reduced to 5 (:class:`~flipnet_rt.faces.types.FaceDetector`).

    Args:
        upsample: times the image is doubled before HOG (1 finds faces down to ~40 px).
        threshold: SVM margin threshold (dlib's ``adjust_threshold``; 0 is dlib's default).
        weights: path of ``shape_predictor_68_face_landmarks.dat`` (default: the installed package's).
    """

    name = "dlib"

    def __init__(self, *, upsample: int = 1, threshold: float = 0.0, weights: Path | None = None) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise ImportError(f"the dlib detector needs dlib: {INSTALL_HINT}", name="dlib") from exc
        self.upsample = int(upsample)
        self.threshold = float(threshold)
        self.hog = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path(weights)))

    def detect(self, image: np.ndarray) -> list[Face]:
        """``uint8 [H, W, 3]`` RGB -> faces, score descending."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"detect: expected a uint8 [H, W, 3] RGB image, got {image.dtype} {image.shape}")
        img = np.ascontiguousarray(image)
        rects, margins, _ = self.hog.run(img, self.upsample, self.threshold)
        faces = []
        for rect, margin in zip(rects, margins):
            shape = self.predictor(img, rect)
            parts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float64)
            box = np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], np.float32)
            faces.append(Face(box=box, score=float(1.0 / (1.0 + np.exp(-margin))), landmarks=five_points(parts)))
        return sort_faces(faces)
