"""RetinaFace (issue 29): priors, decoding and suppression, batches, rotated scans, and the options."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from flipnet_rt.faces.detectors import load_detector
from flipnet_rt.faces.retinaface import (
    SHIPPED_WEIGHTS,
    WEIGHTS_SHA256,
    RetinaFaceConfig,
    RetinaFaceDetector,
    decode_boxes,
    decode_landmarks,
    input_size,
    nms,
    preprocess,
    prior_boxes,
)
from flipnet_rt.faces.rotations import RotatedScans, parse_angles, unrotate_points, upright


def test_the_shipped_network_is_the_recorded_file():
    assert hashlib.sha256(SHIPPED_WEIGHTS.read_bytes()).hexdigest() == WEIGHTS_SHA256


@pytest.mark.parametrize("size", [(32, 32), (97, 211), (736, 1280)])
def test_one_prior_per_output_row(retinaface, size):
    """The priors are the network's rows, in its order: counted against what the network returns."""
    x = np.zeros((1, 3, *size), np.float32)
    loc, conf, landmarks = retinaface.network(x)
    priors = prior_boxes(*size)
    assert loc.shape[1] == conf.shape[1] == landmarks.shape[1] == len(priors)
    # first row: stride 8, top-left cell, 16 px anchor; last row: stride 32, bottom-right cell, 512 px
    np.testing.assert_array_equal(priors[0], [4, 4, 16, 16])
    fh, fw = -(-size[0] // 32), -(-size[1] // 32)
    np.testing.assert_array_equal(priors[-1], [(fw - 0.5) * 32, (fh - 0.5) * 32, 512, 512])
    if size[0] % 32 == 0 and size[1] % 32 == 0:
        assert len(priors) == 42 * (size[0] // 32) * (size[1] // 32)  # the engine spec's 42*h*w


def test_decoding_follows_the_ssd_encoding():
    prior = np.array([[100.0, 50.0, 20.0, 20.0]], np.float32)
    loc = np.array([[1.0, -2.0, 0.0, np.log(2.0) / 0.2]], np.float32)  # centre + (0.1*20, -0.2*20); h doubled
    np.testing.assert_allclose(decode_boxes(loc, prior), [[92.0, 26.0, 112.0, 66.0]], atol=1e-4)
    encoded = np.arange(10, dtype=np.float32)[None]
    points = decode_landmarks(encoded, prior)
    np.testing.assert_allclose(points[0, 2], [100 + 4 * 0.1 * 20, 50 + 5 * 0.1 * 20])


def test_suppression_by_union_and_by_the_smaller_box():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10], [-20, -20, 30, 30]], float)
    scores = np.array([0.9, 0.95, 0.5, 0.9, 0.8])
    assert nms(boxes, scores, 0.4).tolist() == [1, 4, 2]  # 0 and 3 overlap 1 by IoU 0.68; 4 holds them but IoU 0.04
    assert nms(boxes, scores, 1.0).tolist() == [1, 0, 3, 4, 2]  # equal scores: the lower index first
    assert nms(boxes, scores, 0.7, over="min").tolist() == [1, 2]  # 4 holds 1 whole: nested, dropped


def test_input_size_shrinks_to_the_detect_size_and_never_grows():
    assert input_size(720, 1280, 640) == (360, 640)
    assert input_size(2160, 3840, 1280) == (720, 1280)
    assert input_size(300, 200, 1280) == (300, 200)
    assert input_size(300, 200, None) == (300, 200)
    x, scale = preprocess([np.zeros((720, 1280, 3), np.uint8)], 640)
    assert x.shape == (1, 3, 384, 640) and scale == (0.5, 0.5)  # 360 padded to a multiple of 32
    np.testing.assert_array_equal(x[0, :, 0, 0], [-104, -117, -123])  # black, BGR minus the mean
    assert not x[0, :, 360:].any()  # padding: zeros (the mean colour)


def test_config_and_loader_errors_name_the_field():
    with pytest.raises(ValueError, match="detect_size: 16 px"):
        RetinaFaceConfig(detect_size=16)
    with pytest.raises(ValueError, match="detect_size: 4096 px"):
        RetinaFaceConfig(detect_size=4096)
    with pytest.raises(ValueError, match="score_threshold"):
        RetinaFaceConfig(score_threshold=1.0)
    with pytest.raises(ValueError, match="detect_size: applies to the retinaface detector, not mtcnn"):
        load_detector("mtcnn", detect_size=640)
    with pytest.raises(ValueError, match="thresholds: the retinaface detector takes one"):
        load_detector("retinaface", thresholds=(0.6, 0.7, 0.7))
    with pytest.raises(ValueError, match="detect_angles: '45'"):
        parse_angles("45")
    assert parse_angles("270, 0,90,0") == (0, 90, 270)


def test_a_batch_finds_what_single_frames_find(retinaface, astronaut_group):
    image, _ = astronaut_group
    flipped = np.ascontiguousarray(image[:, ::-1])
    one = [retinaface.detect(image), retinaface.detect(flipped)]
    both = retinaface.detect_batch([image, flipped])
    for a, b in zip(one, both):
        assert len(a) == len(b) == 3
        worst = max(float(np.abs(f.landmarks - g.landmarks).max()) for f, g in zip(a, b))
        print(f"batch of 2 vs one by one: worst landmark difference {worst:.2e} px")
        assert worst < 1e-2  # the same network on the same pixels; measured ~1e-4 (batched convolutions)
    with pytest.raises(ValueError, match="batch same sizes"):
        retinaface.detect_batch([image, image[:100]])


def test_the_detect_size_sets_the_smallest_face_found(astronaut_group):
    """Faces of eye distance 30 px are found at 1280 (native for 720p) but not at 320, where they are
    7.5 px at the input; the 60 and 100 px ones are found at both."""
    image, truth = astronaut_group
    small = load_detector("retinaface", detect_size=320).detect(image)
    full = load_detector("retinaface", detect_size=1280).detect(image)
    assert len(full) == 3 and len(small) == 2
    assert min(f.eye_distance for f in small) > 45


def test_unrotating_maps_turned_frames_back():
    """A point marked in the frame, found in each turned frame, maps back to where it was."""
    height, width = 4, 6
    frame = np.zeros((height, width), np.uint8)
    frame[1, 4] = 1  # pixel (x=4, y=1): its centre (4.5, 1.5)
    for angle in (0, 90, 180, 270):
        turned = np.rot90(frame, -angle // 90)
        y, x = np.argwhere(turned)[0]
        back = unrotate_points(np.array([x + 0.5, y + 0.5]), angle, height, width)
        np.testing.assert_allclose(back, [4.5, 1.5], err_msg=f"angle {angle}")


def test_upright_filter():
    face = np.array([[10, 10], [20, 10], [15, 15], [11, 20], [19, 20]], np.float32)
    turned = face[:, ::-1].copy()  # lying on its side: eye line vertical
    upside_down = face * [1, -1]
    assert upright(np.stack([face, turned, upside_down]), 60).tolist() == [True, False, False]


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_rotated_scans_find_turned_faces_with_their_own_landmark_order(retinaface, astronaut_group, angle):
    image, truth = astronaut_group
    turned = np.ascontiguousarray(np.rot90(image, -angle // 90))
    h, w = image.shape[:2]
    found = RotatedScans(retinaface, (0, 90, 180, 270)).detect(turned)
    assert len(found) == 3
    th, tw = turned.shape[:2]
    for t in truth:  # the true points, turned as the frame was
        points = unrotate_points(t.landmarks, (360 - angle) % 360, th, tw)
        best = min(found, key=lambda f: float(np.abs(f.landmarks - points).max()))
        err = float(np.abs(best.landmarks - points).max()) / t.eye_distance
        print(f"turned {angle}: eye distance {t.eye_distance:.0f} px, worst landmark error {err:.1%} of it")
        assert err < 0.15  # the same bound as upright faces (test_detectors.py): order kept, not mirrored
    assert (h, w) != (th, tw) or angle == 180


def test_a_single_scan_misses_turned_faces(retinaface, astronaut_group):
    image, _ = astronaut_group
    turned = np.ascontiguousarray(np.rot90(image, -1))
    assert len(RotatedScans(retinaface, (0, 90, 180, 270)).detect(turned)) == 3
    assert len(RotatedScans(retinaface, (0,)).detect(turned)) < 3  # the upright filter drops sideways finds


def test_the_network_seam_runs_any_callable(astronaut_group):
    calls = []
    base = RetinaFaceDetector()

    def network(x):
        calls.append(x.shape)
        return base.network(x)

    faces = load_detector("retinaface", network=network).detect(astronaut_group[0])
    assert len(faces) == 3 and calls[0] == (1, 3, 736, 1280)


@pytest.mark.parametrize(
    "source, target",
    [(1080, 720), (1920, 1280), (2160, 720), (3840, 1280), (97, 32), (100, 30), (1000, 333), (360, 810), (64, 64)],
)
def test_resize_weights_are_opencvs_resize(source, target):
    """The device path resizes with these matrices (two matrix products); on float pixels they are
    OpenCV's INTER_AREA (shrinking, whole and fractional scales) and INTER_LINEAR (growing) to float
    rounding. Each size's matrix is built once and shared, so it cannot be written to."""
    import cv2

    from flipnet_rt.faces.retinaface import resize_weights

    rng = np.random.default_rng(source)
    image = rng.uniform(0, 255, (source, 7)).astype(np.float32)
    weights = resize_weights(source, target)
    assert weights.shape == (target, source)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    interpolation = cv2.INTER_AREA if target < source else cv2.INTER_LINEAR
    expected = cv2.resize(image, (7, target), interpolation=interpolation)
    worst = float(np.abs(weights @ image - expected).max())
    print(f"{source} -> {target}: worst difference from cv2.resize {worst:.2e} grey levels")
    assert worst < 1e-3  # float32 sums of up to ~3 terms per output, both sides
    assert resize_weights(source, target) is weights and not weights.flags.writeable


@pytest.mark.parametrize("size", [(1080, 1920), (360, 640)])
def test_torch_kernels_make_the_detector_input_the_host_makes(retinaface, astronaut_group, size):
    """The device frame path's detector input from torch tensors (here on the CPU; the same ops on a
    GPU) against the host's (OpenCV on uint8): a frame shrunk to 1280 and one grown 2x. OpenCV rounds
    its uint8 resize to whole grey levels, the matrices do not, so the inputs differ by < 1 grey level;
    the faces found in them agree within the 0.5 px verify holds the backends to."""
    torch = pytest.importorskip("torch")
    import cv2

    from flipnet_rt.faces.device import TorchKernels
    from flipnet_rt.faces.retinaface import network_input, padded

    frame = cv2.resize(astronaut_group[0], size[::-1], interpolation=cv2.INTER_LINEAR)
    rh, rw = retinaface.input_size(*size)
    pad = (padded(rh), padded(rw))
    host = network_input([frame], (rh, rw))
    device = TorchKernels(None, "cpu").detector_input([torch.from_numpy(frame)], (rh, rw), pad).numpy()
    assert device.shape == host.shape == (1, 3, *pad) and device.dtype == np.float32
    grey = float(np.abs(device - host).max())
    scale = (rw / size[1], rh / size[0])
    faces = [retinaface.decode(*retinaface.network(x)[:3], x.shape[2:], scale)[0] for x in (host, device)]
    assert len(faces[0]) == len(faces[1]) == 3
    px = max(float(np.abs(a.landmarks - b.landmarks).max()) for a, b in zip(*faces))
    print(f"{size}: input {rh}x{rw}, worst difference {grey:.2f} grey levels, faces {px:.3f} px")
    assert grey < 1.0 and px <= 0.5
