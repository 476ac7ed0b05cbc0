"""Steady faces in video: what the output takes from the input is filtered along each face track.

The restored face takes parts of its input: the fidelity blend (``W * input``) and, for faces larger
than the model, keep-detail's band above the model's resolution. Taken frame by frame they bring the
input's per-frame noise back into a face whose restoration is otherwise steady (one noise seed per
track). The aligned crops of a track are already motion-compensated (warped by smoothed landmarks),
so a recursive temporal filter over them removes that noise without smearing the face:

    mean_t = mean_{t-1} + a * (crop_t - mean_{t-1})

per pixel, with ``a = alpha`` where the new crop is within ``threshold`` grey levels of the running
mean, rising linearly to 1 at twice the threshold (a real change: an expression, a turn, a cut,
shows at once instead of ghosting). ``alpha = 0.25`` averages ~7 frames: per-frame noise of
standard deviation s is left at ``s * sqrt(alpha / (2 - alpha)) = 0.38 s``. The filtered crop is what
the frame's face restorer then uses as the face's input (the model's input, the blend and
keep-detail), so a track's first frame is its own crop and nothing is delayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Weight of a new crop where it agrees with the track's running mean (~7 frames averaged).
ALPHA = 0.25
#: Grey levels of disagreement up to which a pixel is treated as noise (sensor noise of sigma 4
#: differs from the mean by less than this 99 % of the time); twice it counts as a real change.
THRESHOLD = 12.0


def filter_step(mean: Any, crop: Any, alpha: float, threshold: float) -> Any:
    """One step of the filter: the track's new running mean. ``mean``, ``crop``: float32 ``[S, S, 3]``
    on the 0-255 scale, numpy, torch or CuPy alike (the same float32 arithmetic on each)."""
    diff = crop - mean
    a = alpha + (1.0 - alpha) * (abs(diff) / threshold - 1.0).clip(0.0, 1.0)
    return mean + a * diff


class CropStabiliser:
    """Per track, the motion-adaptive running mean of its aligned input crops (see the module doc).

    Called in frame order: by :class:`~.pipeline.VideoRestorer` on its own thread for the host frame
    path, or by the one engine worker of the device frame path (:mod:`flipnet_rt.faces.device`), where
    the means stay on the GPU.

    Args:
        alpha: weight of a new crop where it agrees with the mean, in (0, 1] (1: no filtering).
        threshold: grey levels up to which a difference is treated as noise (> 0).
        max_age: frames after which a track not seen again is forgotten.
    """

    def __init__(self, alpha: float = ALPHA, threshold: float = THRESHOLD, max_age: int = 30) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha: {alpha}; use a weight in (0, 1]")
        if not threshold > 0:
            raise ValueError(f"threshold: {threshold}; use a positive number of grey levels")
        self.alpha, self.threshold, self.max_age = float(alpha), float(threshold), int(max_age)
        self._mean: dict[int, Any] = {}
        self._seen: dict[int, int] = {}

    def __call__(self, track: int, crop: np.ndarray, frame: int) -> np.ndarray:
        """The filtered crop of ``track`` at ``frame``: ``uint8 [S, S, 3]`` in and out (a track whose
        crop size changed starts again from this crop)."""
        return np.clip(np.rint(self.update(track, crop.astype(np.float32), frame)), 0, 255).astype(np.uint8)

    def update(self, track: int, crop: Any, frame: int) -> Any:
        """:meth:`__call__` on a float32 ``[S, S, 3]`` crop (0-255 scale) of any array library, unrounded:
        the track's new mean, a new array of that library."""
        mean = self._mean.get(track)
        mean = (
            crop
            if mean is None or tuple(mean.shape) != tuple(crop.shape)
            else filter_step(mean, crop, self.alpha, self.threshold)
        )
        self._mean[track], self._seen[track] = mean, frame
        for old in [t for t, seen in self._seen.items() if frame - seen > self.max_age]:
            del self._mean[old], self._seen[old]
        return mean

    @property
    def tracks(self) -> int:
        """Tracks held now."""
        return len(self._mean)


@dataclass(frozen=True)
class TrackCrops:
    """What a face restorer needs to filter the input crops itself, in frame order (the device frame
    path, one engine worker): the stabiliser, each face's track id and each image's frame index."""

    stabiliser: CropStabiliser
    tracks: Sequence[Sequence[int]]
    frames: Sequence[int]
