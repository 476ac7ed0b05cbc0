"""Rotated scans (``--detect-angles 0,90,180,270``): any detector, run on the frame turned by each angle.

Detectors are trained on upright faces: a face lying on its side or upside down is missed, or found
with its landmarks in the wrong places (RetinaFace fires on sideways faces with scores above 0.9). So
each turn keeps only the faces that look upright *in the turned frame* (eye line within ``max_roll``
degrees of horizontal, the mouth below the eyes); with quarter turns every face is upright (roll
within 45 degrees) in exactly one of them. The faces are mapped back to the frame and merged with
non-maximum suppression. The landmark *order* is kept: it names the face's own eyes and mouth
corners, which is what alignment needs to turn the face upright (so in the frame a face's "left" eye
is the image's left only when it is upright).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .retinaface import nms
from .types import Face, FaceDetector, sort_faces

ANGLES = (0, 90, 180, 270)


def parse_angles(value: str | Sequence[int]) -> tuple[int, ...]:
    """``"0,90,180,270"`` (or numbers) -> the sorted distinct clockwise angles; ValueError naming the fix."""
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        angles = tuple(sorted({int(str(a).strip()) for a in items}))
    except ValueError:
        raise ValueError(
            f"detect_angles: {value!r}; give clockwise angles from 0, 90, 180, 270, e.g. 0,90,270"
        ) from None
    if not angles or any(a not in ANGLES for a in angles):
        raise ValueError(f"detect_angles: {value!r}; give clockwise angles from 0, 90, 180, 270, e.g. 0,90,270")
    return angles


def upright(points: np.ndarray, max_roll: float) -> np.ndarray:
    """``[n, 5, 2]`` landmarks -> ``bool [n]``: the eye line within ``max_roll`` degrees of horizontal
    (left eye on the left) and the mouth corners' midpoint below the eyes'."""
    eye = points[:, 1] - points[:, 0]
    roll = np.degrees(np.arctan2(eye[:, 1], eye[:, 0]))
    down = (points[:, 3] + points[:, 4] - points[:, 0] - points[:, 1])[:, 1] > 0
    return (np.abs(roll) <= max_roll) & down


def unrotate_points(points: np.ndarray, angle: int, height: int, width: int) -> np.ndarray:
    """Points ``[..., 2]`` in the frame turned ``angle`` degrees clockwise (``np.rot90(frame, -angle // 90)``,
    of a ``height x width`` frame) -> the frame's continuous coordinates."""
    x, y = points[..., 0], points[..., 1]
    if angle == 90:  # the turned frame is W x H: (x', y') = (H - y, x)
        return np.stack([y, height - x], axis=-1)
    if angle == 180:
        return np.stack([width - x, height - y], axis=-1)
    if angle == 270:  # (x', y') = (y, W - x)
        return np.stack([width - y, x], axis=-1)
    return points


class RotatedScans:
    """A :class:`~flipnet_rt.faces.types.FaceDetector` running ``detector`` at each of ``angles``
    (clockwise degrees) and merging what it finds (module doc); named like the detector it wraps."""

    def __init__(self, detector: FaceDetector, angles: Sequence[int], *, max_roll: float = 60.0) -> None:
        self.detector = detector
        self.angles = parse_angles(angles)
        self.max_roll = float(max_roll)
        self.name = detector.name

    def detect(self, image: np.ndarray) -> list[Face]:
        """``uint8 [H, W, 3]`` RGB -> the faces found at any angle, in the frame's coordinates."""
        height, width = image.shape[:2]
        boxes, scores, points = [], [], []
        for angle in self.angles:
            turned = np.ascontiguousarray(np.rot90(image, -angle // 90)) if angle else image
            for face in self.detector.detect(turned):
                if not upright(face.landmarks[None], self.max_roll)[0]:
                    continue
                corners = unrotate_points(face.box.reshape(2, 2), angle, height, width)
                boxes.append(np.concatenate([corners.min(axis=0), corners.max(axis=0)]))
                points.append(unrotate_points(face.landmarks, angle, height, width))
                scores.append(face.score)
        if not boxes:
            return []
        keep = nms(np.asarray(boxes), np.asarray(scores), 0.4) if len(self.angles) > 1 else range(len(boxes))
        return sort_faces([Face(box=boxes[i], score=scores[i], landmarks=points[i]) for i in keep])
