"""What a face detector returns and what the face restorer reports (DESIGN §6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, runtime_checkable

import numpy as np

#: Landmark order of :attr:`Face.landmarks` (image left/right, as the FFHQ template).
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        box: ``float32 [4]`` ``x0, y0, x1, y1`` in image pixels (x1, y1 exclusive edges).
        score: detector confidence in [0, 1] (1.0 for detectors without one, e.g. dlib HOG is
            mapped from its margin, see :mod:`.dlib_detector`).
        landmarks: ``float32 [5, 2]`` ``(x, y)`` of left eye centre, right eye centre, nose tip,
            left mouth corner, right mouth corner; "left" is the image's left.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    def __post_init__(self) -> None:
        box = np.asarray(self.box, np.float32).reshape(-1)
        points = np.asarray(self.landmarks, np.float32)
        if box.shape != (4,):
            raise ValueError(f"Face.box: expected 4 values x0, y0, x1, y1, got shape {box.shape}")
        if points.shape != (5, 2):
            raise ValueError(f"Face.landmarks: expected [5, 2] points, got shape {points.shape}")
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "landmarks", points)
        object.__setattr__(self, "score", float(self.score))

    @property
    def size(self) -> float:
        """The shorter side of the box in pixels."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))

    def to_dict(self) -> dict:
        """JSON-ready: ``{"box": [4], "score": s, "landmarks": {name: [x, y]}}`` (rounded to 0.01 px)."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(self.score, 4),
            "landmarks": {
                n: [round(float(x), 2), round(float(y), 2)] for n, (x, y) in zip(LANDMARK_NAMES, self.landmarks)
            },
        }


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces with 5 landmarks in one image.

    ``detect(image)``: ``image`` is ``uint8 [H, W, 3]`` RGB; returns the faces sorted by
    :func:`sort_faces` (score descending, then box top-left; deterministic).
    """

    name: str

    def detect(self, image: np.ndarray) -> list[Face]: ...


@runtime_checkable
class BatchFaceDetector(Protocol):
    """A detector that also searches several same-sized frames in one call (video's ``detect_batch``)."""

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]: ...


@runtime_checkable
class NearFaceDetector(Protocol):
    """A detector that also finds faces near given boxes cheaply (MTCNN: its last two stages), for
    video's region tracking (:mod:`flipnet_rt.video.regions`)."""

    def detect_near(self, image: np.ndarray, boxes: Sequence[np.ndarray]) -> list[Face]: ...


def sort_faces(faces: list[Face]) -> list[Face]:
    """The detectors' documented order: score descending, ties by ``(y0, x0)`` ascending."""
    return sorted(faces, key=lambda f: (-round(f.score, 6), float(f.box[1]), float(f.box[0])))


class BorderMode(str, Enum):
    """How :func:`flipnet_rt.faces.align.warp_faces` fills pixels that fall outside the image."""

    REFLECT = "reflect"  # cv2.BORDER_REFLECT_101: mirror without repeating the edge pixel (gfedcb|abcdefgh|gfedcba)
    CONSTANT = "constant"  # facexlib's grey (135, 133, 132)


class FramePath(str, Enum):
    """Where the per-frame work around the engine (warp, colour fix, paste) runs."""

    HOST = "host"  # on the CPU with OpenCV/numpy; crops go to the engine and back (the default)
    DEVICE = "device"  # on the engine's device: the frame uploaded once, downloaded once (faces/device.py)
    AUTO = "auto"  # device on a GPU backend with the native CUDA kernels, else host


@dataclass
class FaceResult:
    """One face of a restored image.

    Attributes:
        face: the detection (or the given, e.g. tracked, face).
        index: the face's index in the detector's order (seed stream and report key).
        seed: the sampling seed used for this face.
        restored: whether it went through the model (False: skipped by ``max_faces``,
            ``min_face_size`` or ``only_center_face``).
        affine: ``float64 [2, 3]`` image -> aligned crop of side ``crop_size`` (None if skipped).
        crop_size: side of the aligned crop in pixels (the model's resolution, or larger when
            keep-detail worked at the face's own size).
        keep_detail: whether the Laplacian residual of the input was kept.
        aligned: ``uint8 [S, S, 3]`` the aligned input crop (None if skipped, and on the device
            frame path, where crops never leave the device).
        output: ``uint8 [S, S, 3]`` the face pasted back (None if skipped, and on the device frame path).
        reason: why a face was not restored.
        fidelity: the weight W of the input in the face pasted back (:mod:`.fidelity`; None if skipped).
        fidelity_source: where W came from: ``fixed``, ``estimator`` or ``none`` (auto without one).
    """

    face: Face
    index: int
    seed: int
    restored: bool
    affine: np.ndarray | None = None
    crop_size: int = 0
    keep_detail: bool = False
    aligned: np.ndarray | None = field(default=None, repr=False)
    output: np.ndarray | None = field(default=None, repr=False)
    reason: str = ""
    fidelity: float | None = None
    fidelity_source: str = ""

    def to_dict(self) -> dict:
        """The ``--report`` entry: box, score, landmarks, seed, restored (and why not)."""
        out = {"index": self.index, **self.face.to_dict(), "seed": self.seed, "restored": self.restored}
        if self.restored:
            out["crop_size"] = self.crop_size
            out["keep_detail"] = self.keep_detail
            out["fidelity"] = None if self.fidelity is None else round(float(self.fidelity), 4)
            out["fidelity_source"] = self.fidelity_source
        else:
            out["reason"] = self.reason
        return out
