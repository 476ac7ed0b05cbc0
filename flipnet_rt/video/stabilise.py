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

import numpy as np

#: Weight of a new crop where it agrees with the track's running mean (~7 frames averaged).
ALPHA = 0.25
#: Grey levels of disagreement up to which a pixel is treated as noise (sensor noise of sigma 4
#: differs from the mean by less than this 99 % of the time); twice it counts as a real change.
THRESHOLD = 12.0


class CropStabiliser:
    """Per track, the motion-adaptive running mean of its aligned input crops (see the module doc).

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
        self._mean: dict[int, np.ndarray] = {}
        self._seen: dict[int, int] = {}

    def __call__(self, track: int, crop: np.ndarray, frame: int) -> np.ndarray:
        """The filtered crop of ``track`` at ``frame``: ``uint8 [S, S, 3]`` in and out (a track whose
        crop size changed starts again from this crop)."""
        mean = self._mean.get(track)
        if mean is None or mean.shape != crop.shape:
            mean = crop.astype(np.float32)
        else:
            diff = crop.astype(np.float32) - mean
            a = self.alpha + (1.0 - self.alpha) * np.clip(np.abs(diff) / self.threshold - 1.0, 0.0, 1.0)
            mean = mean + a.astype(np.float32) * diff
        self._mean[track], self._seen[track] = mean, frame
        for old in [t for t, seen in self._seen.items() if frame - seen > self.max_age]:
            del self._mean[old], self._seen[old]
        return np.clip(np.rint(mean), 0, 255).astype(np.uint8)

    @property
    def tracks(self) -> int:
        """Tracks held now."""
        return len(self._mean)
