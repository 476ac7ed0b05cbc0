"""Tests of the prototype (to move to tests/faces/ with it).

Run: cd docs/studies/detector && PYTHONPATH=../../../tests:../../.. ../../../.venv/bin/python -m pytest -q check_retinaface.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import retinaface as rf

LFW = Path("/work/shared/data/lfw/val")


@pytest.fixture(scope="module")
def run():
    return rf.onnxruntime_runner()


@pytest.fixture(scope="module")
def frame():
    from synthetic.faces import group_picture

    photos = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(LFW.glob("*.jpg"))[:3]]
    return group_picture(photos, np.random.default_rng(3), eye_distance=(40, 80), max_angle=20)


def test_weights_are_the_recorded_file():
    import hashlib

    assert hashlib.sha256(rf.DEFAULT_WEIGHTS.read_bytes()).hexdigest() == rf.WEIGHTS_SHA256


@pytest.mark.parametrize("h,w", [(32, 32), (97, 211), (360, 640), (736, 1280)])
def test_prior_count_matches_network_rows(run, h, w):
    loc, conf, lm = run(np.zeros((2, 3, h, w), np.float32))
    assert loc.shape == (2, rf.prior_count(h, w), 4) and conf.shape[2] == 2 and lm.shape[2] == 10
    assert len(rf.prior_boxes(h, w)) == rf.prior_count(h, w)
    if h % 32 == 0 and w % 32 == 0:
        assert rf.prior_count(h, w) == 42 * (h // 32) * (w // 32)  # the engine spec's 42*h*w


def test_nms_is_greedy_and_deterministic():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.7], np.float32)
    assert rf.nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert rf.nms(boxes, scores, 1.0).tolist() == [1, 0, 2, 3]  # ties: lower index first


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_unrotate_inverts_rot90(turn):
    h, w = 50, 80
    image = np.zeros((h, w), np.uint8)
    image[10, 30] = 1  # pixel (x=30, y=10): its centre is (30.5, 10.5)
    turned = np.rot90(image, -turn // 90)
    y, x = np.argwhere(turned)[0]
    box = np.array([[x, y, x + 1, y + 1]], np.float32)
    pts = np.tile(np.array([[x + 0.5, y + 0.5]], np.float32), (1, 5, 1))
    b, p = rf._unrotate(box, pts, turn, h, w)
    np.testing.assert_allclose(b[0], [30, 10, 31, 11], atol=1e-5)
    np.testing.assert_allclose(p[0, 0], [30.5, 10.5], atol=1e-5)


def test_detects_the_faces_with_their_landmarks(run, frame):
    image, truth = frame
    det = rf.RetinaFaceDetector(rf.RetinaFaceConfig(detect_size=640, score_threshold=0.7), run=run)
    faces = det.detect(image)
    assert len(faces) == len(truth)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    for t in truth:
        best = min(faces, key=lambda f: np.linalg.norm(f.landmarks - t.landmarks))
        assert np.abs(best.landmarks - t.landmarks).max() / t.eye_distance < 0.3  # template noise ~0.15


def test_batch_equals_one_by_one(run, frame):
    image, _ = frame
    other = np.ascontiguousarray(image[:, ::-1])
    det = rf.RetinaFaceDetector(rf.RetinaFaceConfig(detect_size=640, score_threshold=0.5), run=run)
    batched = det.detect_batch([image, other])
    for img, faces in zip([image, other], batched):
        single = det.detect(img)
        assert len(single) == len(faces)
        for a, b in zip(single, faces):
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_rotations_find_turned_faces_in_their_own_landmark_order(run, frame, turn):
    image, truth = frame
    turned = np.ascontiguousarray(np.rot90(image, -turn // 90))
    det = rf.RetinaFaceDetector(
        rf.RetinaFaceConfig(detect_size=640, score_threshold=0.7, rotations=(0, 90, 180, 270)), run=run
    )
    faces = det.detect(turned)
    assert len(faces) == len(truth)
    h, w = image.shape[:2]
    for f in faces:  # back to the upright frame (turned = image turned by `turn`): the face's own order
        _, p = rf._unrotate(f.box[None], f.landmarks[None], turn, h, w)
        best = min(truth, key=lambda t: np.linalg.norm(p[0] - t.landmarks))
        assert np.abs(p[0] - best.landmarks).max() / best.eye_distance < 0.3
