"""Detectors: one contract for both, recall on synthetic group pictures of real LFW faces."""

from __future__ import annotations

import time

import numpy as np
import pytest
from faces.support import load_rgb
from synthetic.faces import group_picture, match_faces

from flipnet_rt.faces.dlib_detector import five_points
from flipnet_rt.faces.mtcnn import nms
from flipnet_rt.faces.types import Face, FaceDetector

FRAMES, PER_FRAME = 40, 3


@pytest.fixture(scope="session")
def lfw_frames(lfw_val):
    """40 frames of 1280x720 with 3 LFW val faces each (120 distinct people): rotation +-30 degrees,
    eye distance 20-110 px (uniform), fixed seed."""
    rng = np.random.default_rng(2015)
    photos = [load_rgb(p) for p in lfw_val[: FRAMES * PER_FRAME]]
    return [group_picture(photos[k * PER_FRAME : (k + 1) * PER_FRAME], rng) for k in range(FRAMES)]


@pytest.fixture(params=["retinaface", "mtcnn", "dlib"])
def detector(request) -> FaceDetector:
    return request.getfixturevalue("dlib_detector" if request.param == "dlib" else request.param)


def test_detector_contract(detector, astronaut_group):
    image, truth = astronaut_group
    faces = detector.detect(image)
    assert isinstance(detector, FaceDetector)
    assert all(isinstance(f, Face) and f.box.dtype == np.float32 and f.landmarks.shape == (5, 2) for f in faces)
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True)
    again = detector.detect(image.copy())
    assert [f.box.tolist() for f in again] == [f.box.tolist() for f in faces]  # deterministic
    # Landmarks land on the true points of the faces found (within 15% of the eye distance).
    for f in faces:
        t = min(truth, key=lambda t: float(np.linalg.norm(t.landmarks[0] - f.landmarks[0])))
        err = float(np.abs(f.landmarks - t.landmarks).max()) / t.eye_distance
        print(f"{detector.name}: eye distance {t.eye_distance:.0f} px, worst landmark error {err:.1%} of it")
        assert err < 0.15
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(image.astype(np.float32))


@pytest.mark.slow
def test_recall_on_synthetic_lfw_frames(lfw_frames, retinaface, mtcnn, dlib_detector):
    """Issue 15: >= 0.98 recall and <= 0.05 false positives per frame with MTCNN; dlib reported.
    Issue 29: RetinaFace (the default) at least MTCNN's recall, and as few false positives."""
    total = FRAMES * PER_FRAME
    results = {}
    for det in (retinaface, mtcnn, dlib_detector):
        found = fps = 0
        missed = []
        start = time.perf_counter()
        for k, (image, truth) in enumerate(lfw_frames):
            faces = det.detect(image)
            hit, fp = match_faces(truth, [f.landmarks for f in faces])
            found, fps = found + hit, fps + fp
            if hit < len(truth):
                missed.append(k)
        ms = (time.perf_counter() - start) / FRAMES * 1e3
        results[det.name] = (found / total, fps / FRAMES)
        print(
            f"{det.name}: recall {found}/{total} = {found / total:.3f}, false positives {fps} "
            f"({fps / FRAMES:.3f}/frame), frames with a miss {missed}, {ms:.0f} ms/frame (not a benchmark)"
        )
    recall, fp_rate = results["mtcnn"]
    assert recall >= 0.98 and fp_rate <= 0.05
    assert results["dlib"][0] >= 0.80  # measured 0.9x here; HOG misses the strongest rotations
    assert results["retinaface"][0] >= recall and results["retinaface"][1] <= 0.05


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10, 0.9], [1, 1, 11, 11, 0.95], [50, 50, 60, 60, 0.5], [0, 0, 10, 10, 0.9]])
    assert nms(boxes, 0.5, "union").tolist() == [1, 2]
    assert nms(boxes, 1.0, "union").tolist() == [1, 0, 3, 2]  # equal scores: lower index first


def test_five_points_from_68():
    parts = np.zeros((68, 2))
    parts[36:42] = [10, 20]
    parts[42:48] = [30, 20]
    parts[30], parts[48], parts[54] = [20, 30], [12, 40], [28, 40]
    np.testing.assert_allclose(five_points(parts), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])


def test_mtcnn_thread_pools_do_not_spin(mtcnn):
    """The detector's ONNX Runtime pools must not spin between calls, as the engine's do not
    (flipnet_rt/backends/onnxruntime.py): in the video pipeline the engine workers keep both cores
    busy, and spinning detector threads took ~25 ms of CPU a frame from them (benchmarks/video_cpu.py)."""
    for net in (mtcnn.pnet, mtcnn.rnet, mtcnn.onet):
        options = net.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0", net.path
        assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0", net.path
