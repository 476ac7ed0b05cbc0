"""Whole-image face pipeline per face: detection, alignment, restore, paste, at 720p / 1080p / 4K.

``make bench`` (or ``pytest benchmarks/test_bench_faces.py --benchmark-only``). Each frame is a
generated background with the public-domain astronaut face 3 times, eye distances scaled with the
frame (1080p: 40, 70, 110 px). Every benchmark stores ``ms_per_face`` (mean round time / faces) in
``extra_info``. ``paste`` is the box-bounded paste (:func:`flipnet_rt.faces.paste.paste_faces`);
``paste_full_frame`` is facexlib's full-frame algorithm on the same faces, the baseline of its ratio;
both also store ``cpu_ms_per_face_1_thread`` (process CPU time with one OpenCV thread).
``restore`` is the 64-px demo engine on ONNX Runtime CPU (one batch of the 3 faces; the model's
cost does not depend on the frame). ``detection`` runs each detector with its defaults: RetinaFace
(the default, frames shrunk to 1280 px) and MTCNN (minimum face size 20 px), grouped by frame size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flipnet_rt.faces.align import estimate_affine, warp_faces
from flipnet_rt.faces.paste import paste_faces
from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer
from flipnet_rt.faces.types import Face
from flipnet_rt.imaging.scene import ASTRONAUT_LANDMARKS, background, place_face

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920), "4K": (2160, 3840)}
EYES_1080 = (40.0, 70.0, 110.0)
DEMO_ENGINE = Path(__file__).resolve().parents[1] / "models" / "demo-onnx"


def _frame(name: str) -> tuple[np.ndarray, list[Face]]:
    from skimage import data

    h, w = SIZES[name]
    k = h / 1080
    rng = np.random.default_rng(7)
    canvas = background(h, w, rng)
    faces = []
    for i, d in enumerate(EYES_1080):
        centre = (w * (i + 0.5) / 3, h * (0.4 + 0.1 * i))
        placed = place_face(canvas, data.astronaut(), ASTRONAUT_LANDMARKS, centre, d * k, (-15.0, 5.0, 20.0)[i])
        lo, hi = placed.landmarks.min(0), placed.landmarks.max(0)
        faces.append(Face(box=np.r_[lo - d * k, hi + d * k], score=1.0, landmarks=placed.landmarks))
    return canvas, faces


@pytest.fixture(scope="module", params=list(SIZES))
def frame(request):
    image, faces = _frame(request.param)
    return request.param, image, faces


@pytest.fixture(scope="module")
def restorer():
    if not (DEMO_ENGINE / "manifest.json").is_file():
        pytest.skip(f"{DEMO_ENGINE} missing")
    from flipnet_rt.runtime.restorer import Restorer

    return Restorer.load(DEMO_ENGINE, backend="onnxruntime", device="cpu")


def _per_face(benchmark, n: int, name: str) -> None:
    benchmark.extra_info["frame"] = name
    benchmark.extra_info["faces"] = n
    benchmark.extra_info["ms_per_face"] = benchmark.stats.stats.mean * 1e3 / n


@pytest.fixture(scope="module", params=["retinaface", "mtcnn"])
def detector(request):
    from flipnet_rt.faces.detectors import load_detector

    return load_detector(request.param)


def test_detection(benchmark, frame, detector):
    name, image, faces = frame
    benchmark.group = f"detection {name}"  # both detectors side by side per frame size
    found = benchmark.pedantic(detector.detect, args=(image,), rounds=3, warmup_rounds=1)
    assert len(found) >= len(faces)
    benchmark.extra_info["detector"] = detector.name
    _per_face(benchmark, len(faces), name)


def _crops(fr: FaceRestorer, image: np.ndarray, faces: list[Face]):
    ((out, results),) = fr.restore_faces([image], [faces], [[0, 1, 2]])
    return results


def test_alignment(benchmark, frame, restorer):
    name, image, faces = frame
    res = restorer.config.resolution
    sizes = [r.crop_size for r in _crops(FaceRestorer(restorer), image, faces)]

    def align():
        affines = [estimate_affine(f.landmarks, res) * (s / res) for f, s in zip(faces, sizes)]
        return warp_faces(image, affines, sizes)

    crops = benchmark.pedantic(align, rounds=20, warmup_rounds=2)
    assert [c.shape[0] for c in crops] == sizes
    benchmark.extra_info["crop_sizes"] = sizes
    _per_face(benchmark, len(faces), name)


def test_restore(benchmark, frame, restorer):
    name, image, faces = frame
    fr = FaceRestorer(restorer, detector=None, options=FaceOptions())
    benchmark.pedantic(fr.restore_faces, args=([image], [faces], [[0, 1, 2]]), rounds=3, warmup_rounds=1)
    _per_face(benchmark, len(faces), name)


@pytest.mark.parametrize("how", ["box", "full_frame"])
def test_paste(benchmark, frame, restorer, how):
    name, image, faces = frame
    results = _crops(FaceRestorer(restorer), image, faces)
    outputs, affines = [r.output for r in results], [r.affine for r in results]
    if how == "box":
        benchmark.pedantic(paste_faces, args=(image, outputs, affines), rounds=10, warmup_rounds=1)
    else:
        benchmark.pedantic(
            _paste_full_frame, args=(image, outputs, affines), rounds=3 if name == "4K" else 5, warmup_rounds=1
        )
    benchmark.extra_info["crop_sizes"] = [r.crop_size for r in results]
    benchmark.extra_info["cpu_ms_per_face_1_thread"] = _cpu_ms_per_face(
        (lambda: paste_faces(image, outputs, affines))
        if how == "box"
        else (lambda: _paste_full_frame(image, outputs, affines)),
        len(faces),
        rounds=10 if how == "box" else 2,
    )
    _per_face(benchmark, len(faces), name)


def _cpu_ms_per_face(run, faces: int, rounds: int) -> float:
    """Process CPU time per face with one OpenCV thread: what a paste costs on one core, much less
    sensitive than wall time to other processes sharing the machine."""
    import time

    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        run()
        start = time.process_time()
        for _ in range(rounds):
            run()
        return (time.process_time() - start) * 1e3 / rounds / faces
    finally:
        cv2.setNumThreads(threads)


def _paste_full_frame(image: np.ndarray, faces, affines) -> np.ndarray:
    """facexlib's ``paste_faces_to_input_image`` (upscale 1): every step over the whole frame."""
    import cv2

    h, w = image.shape[:2]
    out = image.astype(np.float32)
    for face, affine in zip(faces, affines):
        inv = cv2.invertAffineTransform(affine)
        restored = cv2.warpAffine(face, inv, (w, h)).astype(np.float32)
        mask = cv2.warpAffine(np.ones(face.shape[:2], np.float32), inv, (w, h))
        mask_e = cv2.erode(mask, np.ones((2, 2), np.uint8))
        w_edge = max(int(np.sqrt(float(mask_e.sum()))) // 20, 1)
        soft = cv2.GaussianBlur(
            cv2.erode(mask_e, np.ones((2 * w_edge, 2 * w_edge), np.uint8)), (2 * w_edge + 1, 2 * w_edge + 1), 0
        )[..., None]
        out = soft * mask_e[..., None] * restored + (1 - soft) * out
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
