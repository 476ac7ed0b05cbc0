"""Helpers of the video tests (imported as ``video.clips``; tests/ is on pytest's pythonpath).

The clips themselves come from :mod:`synthetic.video` (shared with the benchmark).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from helpers import require  # noqa: F401 (the tests import it from here)
from synthetic.video import (
    cfr_pts,
    face_scene,
    gradient,
    noisy,
    vfr_pts,
    write_clip,
)

__all__ = [
    "StandInFaces",
    "cfr_pts",
    "flicker",
    "frame_times",
    "gradient",
    "require",
    "static_face_frames",
    "stream_packets",
    "vfr_pts",
    "write_clip",
]


def frame_times(path: Path) -> list[Fraction]:
    """Every decoded video frame's exact presentation time (pts x time base), in order."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return [f.pts * v.time_base for f in c.decode(v)]


def stream_packets(path: Path, kind: str = "audio") -> list[tuple[Fraction | None, bytes]]:
    """(time, payload bytes) of every packet of the first ``kind`` stream."""
    with av.open(str(path)) as c:
        s = getattr(c.streams, kind)[0]
        return [(None if p.pts is None else p.pts * p.time_base, bytes(p)) for p in c.demux(s) if p.size]


def static_face_frames(
    n: int,
    *,
    size: tuple[int, int] = (256, 192),
    eye_distance: float = 24.0,
    noise: float = 4.0,
    faces: int = 1,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` frames of a still scene with ``faces`` astronaut heads plus fresh Gaussian sensor noise
    (``noise`` grey levels) in every frame; returns (frames, each head's [x0, y0, x1, y1] box)."""
    scene, boxes = face_scene(size, eye_distance=eye_distance, faces=faces)
    rng = np.random.default_rng(seed)
    return [noisy(scene, noise, rng) for _ in range(n)], boxes


def flicker(frames: list[np.ndarray], box: np.ndarray) -> float:
    """Mean |frame[t+1] - frame[t]| inside ``box`` (grey levels, all channels)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    crops = np.stack([f[y0:y1, x0:x1].astype(np.float32) for f in frames])
    return float(np.abs(np.diff(crops, axis=0)).mean())


class StandInFaces:
    """The parts of a FaceRestorer that VideoRestorer uses besides ``restore_faces`` (host frame path;
    no crop to stabilise: the face restorer warps its own)."""

    device_frames = None

    def aligned_crop(self, image, face):
        return None
