"""Synthetic group pictures with known faces (detector recall tests, benchmarks).

Faces from aligned square photos (e.g. LFW deep-funneled crops) placed with
:func:`flipnet_rt.imaging.scene.place_face` on its background.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flipnet_rt.imaging.scene import PlacedFace, background, place_face

#: Median 5 points of the 300 ``lfw/val`` deep-funneled 250x250 photos, measured with dlib's 68-point
#: predictor reduced to 5 (297 of 300 found; per-point spread 2.5-6 px; eye distance median 41.5 px,
#: range 30-56).
LFW_LANDMARKS = np.array([[104.0, 113.8], [145.7, 112.8], [125.0, 136.0], [107.0, 158.0], [144.0, 157.0]], np.float32)


def group_picture(
    photos: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    height: int = 720,
    width: int = 1280,
    eye_distance: tuple[float, float] = (20.0, 110.0),
    max_angle: float = 30.0,
    landmarks: np.ndarray = LFW_LANDMARKS,
) -> tuple[np.ndarray, list[PlacedFace]]:
    """``len(photos)`` faces side by side in columns, random angle, eye distance and position."""
    canvas = background(height, width, rng)
    column = width / len(photos)
    placed = []
    for k, photo in enumerate(photos):
        d = float(rng.uniform(*eye_distance))
        angle = float(rng.uniform(-max_angle, max_angle))
        r = 1.8 * d
        cx = column * k + column / 2 + rng.uniform(-1, 1) * max(column / 2 - r, 0)
        cy = height / 2 + rng.uniform(-1, 1) * max(height / 2 - r, 0)
        placed.append(place_face(canvas, photo, landmarks, (cx, cy), d, angle))
    return canvas, placed


def match_faces(truth: Sequence[PlacedFace], eye_points: Sequence[np.ndarray]) -> tuple[int, int]:
    """``(found, false_positives)``: a detection (its ``[5, 2]`` points) matches an unmatched true face
    when its eye midpoint is within half the true eye distance and its eye distance within 0.5-2x."""
    used = [False] * len(truth)
    false_positives = 0
    for points in eye_points:
        mid = (points[0] + points[1]) / 2
        d = float(np.linalg.norm(points[1] - points[0]))
        hit = None
        for t, face in enumerate(truth):
            close = np.linalg.norm(mid - face.eye_centre) < 0.5 * face.eye_distance
            if not used[t] and close and 0.5 <= d / face.eye_distance <= 2.0:
                hit = t
                break
        if hit is None:
            false_positives += 1
        else:
            used[hit] = True
    return sum(used), false_positives
