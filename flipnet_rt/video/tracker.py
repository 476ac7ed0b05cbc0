"""Face tracks across frames: IoU matching with a landmark fallback, in numpy (no SORT/Kalman needed
for faces that move a few pixels between detections).

Each detection is matched to the live track whose predicted box overlaps it most (greedy, highest
IoU first, at least ``iou_threshold``); a detection with no such overlap may still join a track whose
predicted landmarks are within ``landmark_threshold`` eye distances (fast small faces, where boxes
stop overlapping; the allowance grows with the frames since the track was last seen).
Predictions extrapolate each track's last velocity, so detecting every k frames still matches
moving faces. Unmatched detections start new tracks; a track unseen for more than
``max_age`` frames ends. Track ids count up from 0 and are never reused, so a track's noise seed
(:func:`track_seed`) is fixed for its whole life.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config.options import image_seed
from ..faces.types import Face


def track_seed(seed: int, track_id: int) -> int:
    """The sampling seed of every face of track ``track_id`` in a run with base ``seed``."""
    return image_seed(seed, track_id, 1)  # variant 1: a stream of its own, apart from per-image seeds


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes ``a [N, 4]`` and ``b [M, 4]`` (x0, y0, x1, y1) -> ``[N, M]`` float32."""
    a = np.asarray(a, np.float32).reshape(-1, 4)[:, None]
    b = np.asarray(b, np.float32).reshape(-1, 4)[None]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-6)


@dataclass
class _Track:
    id: int
    frame: int
    box: np.ndarray  # [4]
    landmarks: np.ndarray  # [5, 2]
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))  # px per frame

    def predict(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        shift = self.velocity * float(frame - self.frame)
        return self.box + np.tile(shift, 2), self.landmarks + shift


class FaceTracker:
    """Assigns a stable track id to every detected face, frame by frame.

    iou_threshold: the least overlap of predicted and detected box that continues a track.
    landmark_threshold: else, the largest mean landmark distance from the prediction, in eye
        distances per frame since the track was last seen, that does.
    max_age: frames a track survives without a detection (covers detect-every-k gaps and misses).
    """

    def __init__(self, *, iou_threshold: float = 0.3, landmark_threshold: float = 0.5, max_age: int = 10) -> None:
        if not 0 < iou_threshold <= 1:
            raise ValueError(f"iou_threshold {iou_threshold}: must be in (0, 1]")
        if max_age < 1:
            raise ValueError(f"max_age {max_age}: must be 1 or more frames")
        self.iou_threshold = iou_threshold
        self.landmark_threshold = landmark_threshold
        self.max_age = max_age
        self.tracks: list[_Track] = []
        self.next_id = 0

    def update(self, frame: int, faces: list[Face], known: list[int | None] | None = None) -> list[int]:
        """Match ``faces`` detected in frame ``frame`` (increasing) -> one track id per face.
        ``known``: per face, the live track it was found for (a search near that track's predicted
        box), which it continues without matching; None: matched as usual."""
        self.tracks = [t for t in self.tracks if frame - t.frame <= self.max_age]
        ids = [-1] * len(faces)
        live = {t.id: t for t in self.tracks}
        for i, tid in enumerate(known or []):
            if tid is not None and tid in live:
                ids[i] = self._continue(live.pop(tid), frame, faces[i])
        open_tracks = list(live.values())
        if faces and open_tracks:
            predicted = [t.predict(frame) for t in open_tracks]
            boxes = np.stack([p[0] for p in predicted])
            overlap = iou(np.stack([f.box for f in faces]), boxes)  # [faces, tracks]
            score = np.where(overlap >= self.iou_threshold, overlap, -1.0)
            for i, face in enumerate(faces):  # landmark fallback where boxes do not overlap enough
                eye = max(face.eye_distance, 1.0)
                for j, (_, marks) in enumerate(predicted):
                    if score[i, j] < 0:
                        d = float(np.linalg.norm(face.landmarks - marks, axis=1).mean()) / eye
                        if d <= self.landmark_threshold * max(frame - open_tracks[j].frame, 1):
                            score[i, j] = 0.0  # below every IoU match, above no match
            score[[i for i in range(len(faces)) if ids[i] >= 0]] = -1.0  # continued by ``known``
            while score.size and score.max() >= 0:
                i, j = divmod(int(np.argmax(score)), score.shape[1])  # the [faces, tracks] index
                ids[i] = self._continue(open_tracks[j], frame, faces[i])
                score[i, :] = -1.0
                score[:, j] = -1.0
        for i, face in enumerate(faces):
            if ids[i] < 0:
                track = _Track(self.next_id, frame, face.box.copy(), face.landmarks.copy())
                self.tracks.append(track)
                self.next_id += 1
                ids[i] = track.id
        return ids

    def predicted(self, frame: int, within: int) -> list[tuple[int, np.ndarray]]:
        """``(track id, predicted box)`` at ``frame`` of every track last seen 1 to ``within`` frames before."""
        return [(t.id, t.predict(frame)[0]) for t in self.tracks if 0 < frame - t.frame <= within]

    @staticmethod
    def _continue(track: _Track, frame: int, face: Face) -> int:
        centre = face.landmarks.mean(axis=0)
        dt = max(frame - track.frame, 1)
        track.velocity = ((centre - track.landmarks.mean(axis=0)) / dt).astype(np.float32)
        track.frame, track.box, track.landmarks = frame, face.box.copy(), face.landmarks.copy()
        return track.id
