"""Tracker and landmark smoother on given detections (the detector itself is tested in tests/faces)."""

from __future__ import annotations

import numpy as np
import pytest

from flipnet_rt.faces.types import Face
from flipnet_rt.video.smoothing import TrackSmoother
from flipnet_rt.video.tracker import FaceTracker, iou, track_seed

# FFHQ-like layout of the 5 points inside a box of side 1 (eyes, nose, mouth corners).
LAYOUT = np.array([[0.35, 0.4], [0.65, 0.4], [0.5, 0.55], [0.38, 0.72], [0.62, 0.72]], np.float32)


def face_at(x: float, y: float, size: float = 60.0, score: float = 0.99) -> Face:
    return Face(
        box=np.array([x, y, x + size, y + size], np.float32),
        score=score,
        landmarks=np.array([x, y], np.float32) + LAYOUT * size,
    )


def test_iou():
    a = np.array([[0, 0, 10, 10]], np.float32)
    got = iou(a, np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32))
    assert got.shape == (1, 3)
    np.testing.assert_allclose(got[0], [1.0, 50 / 150, 0.0], atol=1e-6)


def test_two_faces_keep_their_ids_while_moving_and_crossing_order():
    tracker = FaceTracker()
    ids = []
    for t in range(30):  # face A moves right 4 px/frame, face B stands; detector order changes
        faces = [face_at(10 + 4 * t, 50), face_at(300, 60)]
        if t % 2:
            faces.reverse()
        got = tracker.update(t, faces)
        ids.append(got if t % 2 == 0 else got[::-1])
    assert all(pair == [0, 1] for pair in ids), ids


def test_detect_every_k_frames_follows_a_moving_face():
    """8 px/frame, detections every 5 frames: 40 px jumps of a 60 px face (IoU 0.2 < 0.3). The
    first jump is caught by the landmark allowance (2.2 eye distances in 5 frames), the rest by
    the velocity prediction; a face 200 px away starts its own track."""
    tracker = FaceTracker(max_age=10)
    got = [tracker.update(t, [face_at(8 * t, 40)]) for t in range(0, 50, 5)]
    assert [g[0] for g in got] == [0] * 10
    assert tracker.update(50, [face_at(400, 40), face_at(600, 40)]) == [0, 1]


def test_tracks_end_after_max_age_and_ids_are_never_reused():
    tracker = FaceTracker(max_age=3)
    assert tracker.update(0, [face_at(0, 0)]) == [0]
    assert tracker.update(3, [face_at(0, 0)]) == [0]
    assert tracker.update(8, [face_at(0, 0)]) == [1]  # unseen for 5 > 3 frames: a new track
    assert track_seed(7, 0) != track_seed(7, 1) and track_seed(7, 0) == track_seed(7, 0)


def test_landmark_fallback_when_boxes_stop_overlapping():
    tracker = FaceTracker(iou_threshold=0.9, landmark_threshold=0.5)
    tracker.update(0, [face_at(0, 0, size=40)])
    # shifted by 8 px in one frame: IoU 0.67 < 0.9, landmarks 8 px = 0.67 eye distances (12 px) > 0.5
    assert tracker.update(1, [face_at(8, 0, size=40)]) == [1]
    # 16 px further (its velocity, 8 px/frame, predicts 8) -> 8 px = 0.67 from the prediction: new
    assert tracker.update(2, [face_at(24, 0, size=40)]) == [2]
    # 4 px off the prediction: IoU < 0.9 still, but 0.33 eye distances: same track
    assert tracker.update(3, [face_at(28, 0, size=40)]) == [2]


def test_smoother_removes_jitter_and_follows_motion_without_lag():
    rng = np.random.default_rng(0)
    smoother = TrackSmoother(window=10, sigma=2.0, max_gap=3)
    truth = {t: 100 + 3.0 * t for t in range(60)}  # 3 px/frame to the right
    for t in range(60):
        jitter = rng.normal(0, 2.0, 2)
        smoother.observe(0, t, face_at(truth[t] + jitter[0], 80 + jitter[1]))
    raw_err, smooth_err = [], []
    for t in range(10, 50):
        ((tid, face),) = smoother.faces_at(t)
        want = face_at(truth[t], 80).landmarks
        smooth_err.append(np.abs(face.landmarks - want).mean())
    rng = np.random.default_rng(0)
    raw_err = [np.abs(rng.normal(0, 2.0, 2)).mean() for _ in range(40)]
    print(f"mean landmark error: raw {np.mean(raw_err):.2f} px, smoothed {np.mean(smooth_err):.2f} px")
    assert np.mean(smooth_err) < 0.5 * np.mean(raw_err)  # sigma 2 averages ~7 detections
    assert (
        abs(
            np.mean([f.landmarks[:, 0].mean() for _, f in [smoother.faces_at(30)[0]]])
            - face_at(truth[30], 80).landmarks[:, 0].mean()
        )
        < 1.5
    )  # no lag on steady motion


def test_short_misses_are_filled_long_ones_are_not_and_no_extrapolation():
    smoother = TrackSmoother(window=10, sigma=0.0, max_gap=3)
    for t in [0, 1, 2, 6, 7, 20]:  # a 3-frame miss (3..5), then a 12-frame one (8..19)
        smoother.observe(5, t, face_at(10.0 * t, 0))
    present = {t: smoother.faces_at(t) for t in range(0, 22)}
    filled = present[4][0][1]
    np.testing.assert_allclose(filled.box[0], 40.0, atol=1e-4)  # linear between frames 2 and 6
    assert all(present[t] for t in (0, 1, 2, 3, 4, 5, 6, 7, 20))
    assert not any(present[t] for t in range(8, 20)) and not present[21]
    assert present[3][0][0] == 5


def test_smoother_forgets_old_detections():
    smoother = TrackSmoother(window=4, sigma=1.0, max_gap=2)
    for t in range(100):
        smoother.observe(0, t, face_at(t, 0))
        smoother.forget_before(t - 4)
    assert len(smoother._obs[0]) <= 10


def test_max_gap_beyond_the_window_is_refused():
    with pytest.raises(ValueError, match="raise the window"):
        TrackSmoother(window=2, max_gap=5)


def test_smoother_takes_a_track_followed_backwards():
    """Faces found backwards from a track's first detection (region tracking's look-back) arrive in
    decreasing frame order; the fit is the same as when they arrive in order."""
    forwards, backwards = TrackSmoother(window=5, sigma=1.0), TrackSmoother(window=5, sigma=1.0)
    faces = {t: face_at(10 + 2.0 * t, 20) for t in range(3, 9)}
    for t in sorted(faces):
        forwards.observe(0, t, faces[t])
    for t in (5, 6, 7, 8, 4, 3):  # detected at 5, then followed on, and back to 4 and 3
        backwards.observe(0, t, faces[t])
    for t in range(3, 9):
        ((_, a),) = forwards.faces_at(t)
        ((_, b),) = backwards.faces_at(t)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-9)
    with pytest.raises(ValueError, match="frame 4 observed twice"):
        backwards.observe(0, 4, faces[4])


def test_predicted_boxes_of_recently_seen_tracks():
    tracker = FaceTracker(max_age=10)
    tracker.update(0, [face_at(0, 0), face_at(200, 0)])
    tracker.update(1, [face_at(4, 0)])  # the second face is not seen in frame 1
    got = dict(tracker.predicted(2, within=1))
    assert list(got) == [0]  # track 1 was last seen 2 frames before frame 2
    np.testing.assert_allclose(got[0], face_at(8, 0).box)  # moving 4 px/frame
    assert sorted(dict(tracker.predicted(2, within=2))) == [0, 1]
    assert [tid for tid, _ in tracker.predicted(1, within=5)] == [1]  # not a track seen in that frame itself


def test_a_face_found_near_a_track_continues_it_whatever_the_distance():
    tracker = FaceTracker(max_age=5)
    assert tracker.update(0, [face_at(0, 0)]) == [0]
    far = face_at(100, 0)  # no overlap, 100 px: the tracker alone would start a new track
    assert tracker.update(1, [far], known=[0]) == [0]
    np.testing.assert_allclose(tracker.tracks[0].velocity, [100, 0])
    # an unknown or ended track id: matched as usual (here: overlaps track 0's prediction at 200)
    assert tracker.update(2, [face_at(200, 0), face_at(400, 300)], known=[None, 7]) == [0, 1]
