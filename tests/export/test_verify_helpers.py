"""export/verify.py's fast parts: the report it prints, its error measures and its seeded inputs
(issue 19). ``verify()`` itself needs an exported engine: tests/export/test_verify.py's slow tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch")

from flipnet_rt.engine.spec import Dim, NetworkSpec, TensorSpec  # noqa: E402
from flipnet_rt.export.verify import Check, Report, _compare, _inputs, psnr  # noqa: E402


def test_report_lines_are_the_table_verify_prints():
    report = Report(
        checks=[
            Check("onnxruntime", "unet_input", 1.5e-6, 2.25e-7, 1e-4, True),
            Check("tensorrt", "vae_decoder", 0.125, 3e-3, 2e-2, True),
            Check("tensorrt", "unet_cond", 2.0, 0.5, 2e-2, False),
        ],
        psnr_db={"onnxruntime": 52.3456, "tensorrt": 24.5},
        psnr_limit=25.0,
        skipped=["onnxruntime-cuda: no GPU"],
    )
    assert report.lines() == [
        "backend          network          max abs     rel L2    limit  result",
        "onnxruntime      unet_input      1.50e-06   2.25e-07    1e-04  ok",
        "tensorrt         vae_decoder     1.25e-01   3.00e-03    2e-02  ok",
        "tensorrt         unet_cond       2.00e+00   5.00e-01    2e-02  FAIL",
        "onnxruntime      end-to-end PSNR vs torch fp32: 52.35 dB (limit 25 dB)  ok",
        "tensorrt         end-to-end PSNR vs torch fp32: 24.50 dB (limit 25 dB)  FAIL",
        "skipped: onnxruntime-cuda: no GPU",
    ]
    assert Report(psnr_db={"x": 25.0}, psnr_limit=25.0).lines()[-1].endswith("(limit 25 dB)  ok")  # inclusive


def test_the_detector_rows_and_their_half_pixel_limit():
    """verify's detector check (issue 29): one row per backend with its worst box/landmark difference
    against PyTorch's faces; the 0.5 px limit is inclusive, and one backend over it fails the report."""
    report = Report(detector_px={"onnxruntime": 1.25e-4, "torch": 0.5, "tensorrt": 0.75})
    assert report.lines() == [
        "backend          network          max abs     rel L2    limit  result",
        "onnxruntime      detector faces vs torch fp32: 1.25e-04 px (limit 0.5 px)  ok",
        "torch            detector faces vs torch fp32: 5.00e-01 px (limit 0.5 px)  ok",
        "tensorrt         detector faces vs torch fp32: 7.50e-01 px (limit 0.5 px)  FAIL",
    ]
    assert not report.passed
    assert Report(detector_px={"onnxruntime": 1.25e-4, "torch": 0.5}).passed
    assert not Report(detector_px={"onnxruntime": math.inf}).passed  # a face the backend did not find


def test_compare_is_max_abs_and_relative_l2():
    ref = np.array([[3.0, 4.0]], np.float32)
    ours = np.array([[3.0, 4.5]], np.float16)
    max_abs, rel = _compare(ours, ref)
    assert max_abs == 0.5 and rel == pytest.approx(0.5 / 5.0, rel=1e-15)
    # a zero reference: the norm's floor keeps it finite instead of dividing by zero
    assert _compare(np.array([1e-31]), np.zeros(1)) == (1e-31, pytest.approx(0.1, rel=1e-12))
    # float64 arithmetic: float32 inputs whose difference float32 would round away
    a, b = np.array([1.0 + 2**-23], np.float32), np.array([1.0], np.float32)
    assert _compare(a, b) == (2**-23, 2**-23)


def test_psnr_of_uint8_images():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    assert psnr(a, b) == math.inf
    b[0, 0, 0] = 255  # mse = 255^2 / 12 -> 10 log10(12)
    assert psnr(a, b) == pytest.approx(10 * math.log10(12), rel=1e-12)
    c = np.full((1, 1, 3), 250, np.uint8)  # uint8 arithmetic would wrap 0 - 250 to 6
    assert psnr(np.zeros_like(c), c) == pytest.approx(20 * math.log10(255 / 250), rel=1e-12)
    d = np.full((2, 2, 3), 100, np.uint8)  # a difference, not a sum: 100 vs 101 and 102
    e = d.copy()
    e[0] += 2
    assert psnr(d, e) == pytest.approx(10 * math.log10(255**2 / 2), rel=1e-12)
    assert psnr(d, d + 1) == pytest.approx(20 * math.log10(255), rel=1e-12)  # mse 1 is finite


def test_inputs_are_seeded_draws_by_name():
    spec = NetworkSpec(
        "unet_input",
        inputs=(
            TensorSpec("sample", "float32", (Dim.parse("2*B"), Dim(4), Dim.parse("h"), Dim.parse("w"))),
            TensorSpec("timestep", "float32", (Dim.parse("B"),)),
            TensorSpec("phi", "float32", (Dim(1),)),
            TensorSpec("kv", "float16", (Dim.parse("B"), Dim(3))),
        ),
        outputs=(TensorSpec("out", "float32", (Dim.parse("B"),)),),
    )
    feeds = _inputs(spec, {"B": 2, "h": 3, "w": 5}, seed=7)
    rng = np.random.default_rng(7)
    sample = rng.standard_normal((4, 4, 3, 5), dtype=np.float32)
    timestep = rng.integers(0, 1000, (2,)).astype(np.float32)
    kv = rng.standard_normal((2, 3), dtype=np.float32)
    assert list(feeds) == ["sample", "timestep", "phi", "kv"]
    np.testing.assert_array_equal(feeds["sample"], sample)
    np.testing.assert_array_equal(feeds["timestep"], timestep)
    np.testing.assert_array_equal(feeds["phi"], np.ones(1, np.float32))
    np.testing.assert_array_equal(feeds["kv"], kv)
    assert {k: v.dtype for k, v in feeds.items()} == dict.fromkeys(feeds, np.float32)
    big = _inputs(spec, {"B": 4000, "h": 1, "w": 1}, seed=0)["timestep"]
    assert big.min() >= 0 and big.max() <= 999 and big.max() >= 990  # [0, 1000): every training step


def test_detector_difference_compares_the_decoded_faces():
    """verify's detector check (issue 29): the faces decoded from a backend's outputs against PyTorch's,
    in pixels; a face moved by more than 0.5 px fails, a face missing is infinite, no face to compare is None."""
    from skimage import data

    from flipnet_rt.export.verify import DETECTOR_PX, _detector_inputs, detector_difference
    from flipnet_rt.faces.onnx_session import OnnxNet
    from flipnet_rt.faces.retinaface import SHIPPED_WEIGHTS

    net = OnnxNet(SHIPPED_WEIGHTS)
    feeds = _detector_inputs(data.astronaut()[:300, 100:400])  # her face, scaled to the 256 px frame
    ref = dict(zip(("loc", "conf", "landmarks"), net(feeds["input"])))
    assert detector_difference(ref, ref) == 0.0
    moved = dict(ref, landmarks=ref["landmarks"] + np.float32(0.6 / (0.1 * 16)))  # >= 0.6 px at every anchor
    assert detector_difference(moved, ref) > DETECTOR_PX
    lost = dict(ref, conf=np.zeros_like(ref["conf"]))
    assert detector_difference(lost, ref) == math.inf
    assert detector_difference(ref, lost) is None


def test_detector_difference_is_the_worst_over_every_face_box_and_landmark():
    """Four faces in the frame: moving any one of them (its box alone, or its landmarks alone) by more
    than the limit is found, whichever face the decoder lists last."""
    from skimage import data

    from flipnet_rt.export.verify import DETECTOR_FRAME, DETECTOR_PX, _detector_inputs, detector_difference
    from flipnet_rt.faces.onnx_session import OnnxNet
    from flipnet_rt.faces.retinaface import SHIPPED_WEIGHTS, prior_boxes

    face = data.astronaut()[:300, 100:400]
    feeds = _detector_inputs(np.vstack([np.hstack([face, face])] * 2))  # 2 x 2 faces, 128 px each
    ref = dict(zip(("loc", "conf", "landmarks"), OnnxNet(SHIPPED_WEIGHTS)(feeds["input"])))
    assert detector_difference(ref, ref) == 0.0
    centre = prior_boxes(DETECTOR_FRAME, DETECTOR_FRAME)[:, :2]  # each output row's anchor centre
    shift = np.float32(0.6 / (0.1 * 16))  # >= 0.6 px at every anchor (the smallest are 16 px)
    for right in (False, True):
        for below in (False, True):
            rows = ((centre[:, 0] >= DETECTOR_FRAME / 2) == right) & ((centre[:, 1] >= DETECTOR_FRAME / 2) == below)
            one_face = rows[None, :, None].astype(np.float32)
            landmarks = dict(ref, landmarks=ref["landmarks"] + shift * one_face)
            assert detector_difference(landmarks, ref) > DETECTOR_PX, (right, below)
            boxes = dict(ref, loc=ref["loc"] + shift * one_face * np.float32([1, 1, 0, 0]))  # the centre moves
            assert detector_difference(boxes, ref) > DETECTOR_PX, (right, below)
