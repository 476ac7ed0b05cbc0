"""Landmark smoothing over a bounded window of frames, with short misses filled in.

For frame ``t`` each track's face is a local linear fit (Gaussian weights, ``sigma`` frames) of the
track's detections within ``t ± window``, evaluated at ``t``: jitter averages out, steady motion is
followed without lag (a centred linear fit is unbiased on a straight path), and a frame between
two detections up to ``max_gap`` frames apart (a miss, or detection every k frames) gets the
interpolated face. A track is drawn only between its first and last detection, never extrapolated.

The caller must have observed every frame up to ``t + window`` before asking for ``t`` (the
look-ahead); memory is ``window`` detections per live track, never the video's length.
"""

from __future__ import annotations

from collections import defaultdict, deque

import numpy as np

from ..faces.types import Face


class TrackSmoother:
    """Per-track detections in, smoothed faces per frame out.

    window: frames looked at on each side of ``t`` (the look-ahead the caller must provide).
    sigma: Gaussian width in frames; 0 turns smoothing off (detections as they are; misses still filled).
    max_gap: the longest run of frames without a detection that is filled by interpolation.
    """

    def __init__(self, *, window: int = 10, sigma: float = 2.0, max_gap: int = 5) -> None:
        if window < 0 or sigma < 0 or max_gap < 0:
            raise ValueError(f"window {window}, sigma {sigma}, max_gap {max_gap}: must be >= 0")
        if max_gap > window:
            raise ValueError(
                f"max_gap {max_gap} > window {window}: a gap is filled only when both its ends "
                f"are inside the look-ahead window; raise the window"
            )
        self.window, self.sigma, self.max_gap = window, sigma, max_gap
        self._obs: dict[int, deque[tuple[int, Face]]] = defaultdict(deque)

    def observe(self, track_id: int, frame: int, face: Face) -> None:
        """Record a detection; an earlier frame than the track's last (a face found backwards from
        where it was first detected) goes in its place."""
        q = self._obs[track_id]
        if q and frame <= q[-1][0]:
            frames = [f for f, _ in q]
            if frame in frames:
                raise ValueError(f"track {track_id}: frame {frame} observed twice")
            q.insert(int(np.searchsorted(frames, frame)), (frame, face))
        else:
            q.append((frame, face))

    def faces_at(self, frame: int) -> list[tuple[int, Face]]:
        """``(track id, face)`` of every track present at ``frame``, in track id order."""
        out = []
        for tid in sorted(self._obs):
            obs = [(f, face) for f, face in self._obs[tid] if abs(f - frame) <= self.window]
            before = [f for f, _ in obs if f <= frame]
            after = [f for f, _ in obs if f >= frame]
            if not before or not after or min(after) - max(before) - 1 > self.max_gap:
                continue
            out.append((tid, self._fit(obs, frame)))
        return out

    def forget_before(self, frame: int) -> None:
        """Drop detections older than ``frame - window`` (no longer inside any later window)."""
        for tid in list(self._obs):
            q = self._obs[tid]
            while q and q[0][0] < frame - self.window:
                q.popleft()
            if not q:
                del self._obs[tid]

    def _fit(self, obs: list[tuple[int, Face]], frame: int) -> Face:
        d = np.array([f - frame for f, _ in obs], np.float64)
        nearest = obs[int(np.argmin(np.abs(d)))][1]
        if self.sigma == 0:  # no smoothing: the detection itself, or the line between the two neighbours
            if d[np.argmin(np.abs(d))] == 0:
                return nearest
            w = ((d == d[d < 0].max()) | (d == d[d > 0].min())).astype(np.float64)
        else:
            w = np.exp(-0.5 * (d / self.sigma) ** 2)
        values = np.stack([np.concatenate([face.box, face.landmarks.reshape(-1)]) for _, face in obs])
        values = values.astype(np.float64)
        fitted = _local_linear(d, w, values)
        return Face(box=fitted[:4], score=nearest.score, landmarks=fitted[4:].reshape(5, 2))


def _local_linear(d: np.ndarray, w: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Weighted least-squares line through ``(d, values)`` evaluated at ``d = 0`` (the intercept);
    the weighted mean when the points do not determine a slope. ``values [N, K]`` -> ``[K]``."""
    s0, s1, s2 = w.sum(), (w * d).sum(), (w * d * d).sum()
    t0 = (w[:, None] * values).sum(0)
    det = s0 * s2 - s1 * s1
    if det <= 1e-9 * max(s0 * s2, 1e-12):
        return t0 / s0
    t1 = ((w * d)[:, None] * values).sum(0)
    return (s2 * t0 - s1 * t1) / det
