"""Pictures composed from face photos: a textured face-free background, a face placed by its 5 points.

The demo's group picture is made with these (and tests' and benchmarks' generated scenes,
``tests/synthetic``). A photo is rotated, scaled to a target eye distance and blended through a
soft disc onto the canvas; the placed face's ground truth is its source landmarks mapped through the
same similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The astronaut's 5 points in ``skimage.data.astronaut()`` (512x512, NASA, public domain): the mean of
#: MTCNN's and dlib's 68->5 points on it (they agree within 1.5 px).
ASTRONAUT_LANDMARKS = np.array(
    [[203.5, 101.4], [246.5, 103.7], [224.6, 128.2], [201.4, 139.4], [245.5, 141.5]], np.float32
)


@dataclass(frozen=True)
class PlacedFace:
    """Ground truth of one composited face: its 5 points in the picture and its eye distance."""

    landmarks: np.ndarray  # float32 [5, 2]
    eye_distance: float
    angle: float  # degrees, counter-clockwise in the picture

    @property
    def eye_centre(self) -> np.ndarray:
        return (self.landmarks[0] + self.landmarks[1]) / 2


def background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A face-free texture: smooth colour gradients plus fine noise, ``uint8 [H, W, 3]``."""
    import cv2

    coarse = rng.uniform(40, 215, size=(max(height // 160, 2), max(width // 160, 2), 3)).astype(np.float32)
    base = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = cv2.GaussianBlur(rng.normal(0, 12, size=(height, width, 3)).astype(np.float32), (0, 0), 1.5)
    return np.clip(base + grain, 0, 255).astype(np.uint8)


def place_face(
    canvas: np.ndarray,
    photo: np.ndarray,
    landmarks: np.ndarray,
    centre: Sequence[float],
    eye_distance: float,
    angle: float,
    radius: float = 1.8,
) -> PlacedFace:
    """Blend ``photo`` (``uint8 [h, w, 3]``) into ``canvas`` in place.

    The photo is rotated by ``angle`` degrees and scaled so its eye distance (from ``landmarks``) is
    ``eye_distance`` px, its eye midpoint's neighbourhood lands at ``centre`` (the point between eye
    midpoint and mouth), and only a soft disc of ``radius`` eye distances around that point is kept.
    """
    import cv2

    points = np.asarray(landmarks, np.float64)
    scale = eye_distance / float(np.linalg.norm(points[1] - points[0]))
    anchor = (points[0] + points[1] + points[3] + points[4]) / 4  # face centre: eyes and mouth corners
    m = cv2.getRotationMatrix2D((float(anchor[0]), float(anchor[1])), angle, scale)
    m[:, 2] += np.asarray(centre, np.float64) - anchor
    h, w = canvas.shape[:2]
    r = radius * eye_distance
    x0, y0 = max(int(centre[0] - r) - 1, 0), max(int(centre[1] - r) - 1, 0)
    x1, y1 = min(int(centre[0] + r) + 2, w), min(int(centre[1] + r) + 2, h)
    if x1 > x0 and y1 > y0:  # only the disc's box is touched
        local = m.copy()
        local[:, 2] -= (x0, y0)
        warped = cv2.warpAffine(
            photo,
            local,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dist = np.hypot(xx - centre[0], yy - centre[1])
        alpha = np.clip((r - dist) / (0.25 * r), 0, 1).astype(np.float32)[..., None]
        region = canvas[y0:y1, x0:x1]
        region[:] = np.clip(alpha * warped + (1 - alpha) * region, 0, 255).astype(np.uint8)
    mapped = (np.c_[points, np.ones(5)] @ m.T).astype(np.float32)
    return PlacedFace(mapped, float(eye_distance), float(angle))
