"""Detection near known faces: the cheap step between two full-frame detections.

A full-frame detector pays for every place and scale a face could be (MTCNN's pyramid: ~30 ms at
360p, ~165 ms at 720p on one CPU core). Between two full detections a tracked face can only be
near where its track predicts it, at about the same size, so the detector looks there only: a
detector with a ``detect_near(image, boxes)`` method of its own is asked directly (MTCNN: its last
two networks on a few candidate boxes around each prediction, ~2 ms a face, landmarks within
0.5 px of a full search); any other runs on a window around each predicted box (``margin`` box
sides on each side) scaled so the face is at most ``face_px`` pixels. New faces are left to the
next full-frame detection.

Per predicted box the face that overlaps it most is kept (a neighbour's face cut by a window's edge
is not), and a face found near two boxes is kept once. The caller knows which track each box
came from, so the face continues that track even when it moved too far for the tracker's own
matching (fast motion right after a face was first found, before its velocity is known).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..faces.types import Face, FaceDetector, NearFaceDetector, sort_faces
from .tracker import iou

MARGIN = 0.5  # window = predicted box grown by this many box sides on each side
FACE_PX = 160  # faces larger than this are searched in a window scaled down to this size
MIN_IOU = 0.1  # a face must overlap its predicted box at least this much to continue the track


def window(box: np.ndarray, shape: tuple[int, ...], margin: float = MARGIN) -> tuple[int, int, int, int] | None:
    """The square window (x0, y0, x1, y1), clipped to an image of ``shape``, searched for ``box``'s
    face; None when it falls outside the image."""
    side = float(max(box[2] - box[0], box[3] - box[1]))
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
    half = side * (0.5 + margin)
    h, w = shape[:2]
    x0, y0 = max(int(np.floor(cx - half)), 0), max(int(np.floor(cy - half)), 0)
    x1, y1 = min(int(np.ceil(cx + half)), w), min(int(np.ceil(cy + half)), h)
    if x1 - x0 < 12 or y1 - y0 < 12:
        return None
    return x0, y0, x1, y1


def find_near(
    detector: FaceDetector,
    image: np.ndarray,
    boxes: Sequence[np.ndarray],
    *,
    margin: float = MARGIN,
    face_px: float = FACE_PX,
    min_iou: float = MIN_IOU,
) -> list[Face | None]:
    """For each of ``boxes`` (predicted ``x0, y0, x1, y1``) the face found near it that overlaps it
    most, in ``image``'s coordinates, or None; a face near two boxes goes to the one it overlaps
    more. A detector with a ``detect_near(image, boxes)`` method of its own (MTCNN: its last two
    stages on candidates around the boxes) is asked directly; any other runs on a window around
    each box."""
    boxes = [np.asarray(box, np.float32) for box in boxes]
    if isinstance(detector, NearFaceDetector):
        faces = detector.detect_near(image, boxes) if boxes else []
        found = [best_match(faces, box, min_iou) for box in boxes]
    else:
        found = [best_match(_in_window(detector, image, box, margin, face_px), box, min_iou) for box in boxes]
    overlap = [float(iou(f.box[None], b[None])[0, 0]) if f is not None else 0.0 for f, b in zip(found, boxes)]
    for i in range(len(found)):
        for j in range(i + 1, len(found)):
            a, b = found[i], found[j]
            if a is not None and b is not None and iou(a.box[None], b.box[None])[0, 0] > 0.5:
                found[j if overlap[j] < overlap[i] else i] = None
    return found


def detect_near(detector: FaceDetector, image: np.ndarray, boxes: Sequence[np.ndarray], **options) -> list[Face]:
    """The faces :func:`find_near` finds, score descending."""
    return sort_faces([f for f in find_near(detector, image, boxes, **options) if f is not None])


def _in_window(detector: FaceDetector, image: np.ndarray, box: np.ndarray, margin: float, face_px: float) -> list[Face]:
    """``detector.detect`` on the window around ``box``, scaled so its face is at most ``face_px``."""
    import cv2

    region = window(box, image.shape, margin)
    if region is None:
        return []
    x0, y0, x1, y1 = region
    crop = image[y0:y1, x0:x1]
    side = float(max(box[2] - box[0], box[3] - box[1]))
    scale = min(1.0, face_px / max(side, 1.0))
    if scale < 1.0:
        size = (max(round((x1 - x0) * scale), 12), max(round((y1 - y0) * scale), 12))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        sx, sy = (x1 - x0) / size[0], (y1 - y0) / size[1]
    else:
        crop, sx, sy = np.ascontiguousarray(crop), 1.0, 1.0
    return [_moved(f, sx, sy, x0, y0) for f in detector.detect(crop)]


def refine(detector: FaceDetector, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
    """``faces`` of a full-frame search, each found again by :func:`detect_near` around its own
    box (kept as it was where that finds nothing): every landmark of a track then comes from the
    same search, so a track does not jump by the two searches' small difference (~0.3 px) at every
    full search, which a restored face would show as flicker."""
    near = detect_near(detector, image, [f.box for f in faces]) if faces else []
    return sort_faces([best_match(near, f.box) or f for f in faces])


def best_match(faces: Sequence[Face], box: np.ndarray, min_iou: float = MIN_IOU) -> Face | None:
    """The face of ``faces`` that overlaps ``box`` most, if it overlaps at least ``min_iou``."""
    if not faces:
        return None
    overlap = iou(np.stack([f.box for f in faces]), np.asarray(box, np.float32)[None])[:, 0]
    best = int(np.argmax(overlap))
    return faces[best] if overlap[best] >= min_iou else None


def _moved(face: Face, sx: float, sy: float, x0: int, y0: int) -> Face:
    scale, offset = np.array([sx, sy], np.float32), np.array([x0, y0], np.float32)
    box = face.box.reshape(2, 2) * scale + offset
    return Face(box=box.reshape(4), score=face.score, landmarks=face.landmarks * scale + offset)
