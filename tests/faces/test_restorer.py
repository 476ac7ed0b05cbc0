"""FaceRestorer over the shipped demo engine (ONNX Runtime, no torch) on a composited picture."""

from __future__ import annotations

import json

import numpy as np
import pytest
from faces.support import ShiftRestorer

from flipnet_rt.faces.paste import paste_box, soft_mask
from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer, face_seed, select_faces
from flipnet_rt.faces.report import image_entry, save_faces, write_report
from flipnet_rt.faces.types import Face


def _outside(image_shape, results) -> np.ndarray:
    inside = np.zeros(image_shape[:2], bool)
    for r in results:
        if r.restored:
            x0, y0, x1, y1 = box = paste_box(r.affine, r.crop_size, *image_shape[:2])
            inside[y0:y1, x0:x1] |= soft_mask(r.affine, r.crop_size, box)[2] > 0
    return ~inside


@pytest.fixture(scope="module")
def demo_faces(demo_restorer, mtcnn):
    return FaceRestorer(demo_restorer, detector=mtcnn)


def test_whole_picture_with_the_demo_engine(demo_faces, demo_restorer, astronaut_group, tmp_path):
    image, truth = astronaut_group
    out, results = demo_faces.restore_image(image, seed=7)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert len(results) == 3 and all(r.restored for r in results)
    assert [r.seed for r in results] == [face_seed(7, j) for j in range(3)]
    outside = _outside(image.shape, results)
    np.testing.assert_array_equal(out[outside], image[outside])
    from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer

    model_only = FaceRestorer(demo_restorer, demo_faces.detector, FaceOptions(fidelity=0.0))
    _, plain = model_only.restore_image(image, seed=7)
    changed = [float(np.abs(r.output.astype(np.int16) - r.aligned).mean()) for r in plain]
    kept = [float(np.abs(r.output.astype(np.int16) - r.aligned).mean()) for r in results]
    print(
        f"demo engine: crops {[r.crop_size for r in results]} (model 64 px), keep-detail "
        f"{[r.keep_detail for r in results]}, mean |restored - aligned| per face {[f'{c:.2f}' for c in changed]} "
        f"with fidelity 0, {[f'{c:.2f}' for c in kept]} with auto (weights {[round(r.fidelity, 2) for r in results]})"
    )
    assert all(c > 0.5 for c in changed)  # the model did change every face
    # this clean picture: the estimator keeps most of each input face
    assert all(r.fidelity_source == "estimator" and r.fidelity > 0.5 for r in results)
    assert all(k < c for k, c in zip(kept, changed))

    again, _ = demo_faces.restore_image(image, seed=7)
    np.testing.assert_array_equal(again, out)  # same seed, same picture

    # In one batch with another picture (and its faces), this picture's result stays the same.
    flipped = np.ascontiguousarray(image[:, ::-1])
    (batched, _), (other, other_results) = demo_faces.restore_images([image, flipped], [7, 8])
    diff = int(np.abs(batched.astype(np.int16) - out).max())
    print(f"batched with a second picture ({len(other_results)} faces): max difference {diff} grey levels")
    assert diff <= 1  # ONNX Runtime may pick other kernels for another batch size: float rounding only

    entry = image_entry("group.png", image.shape, results, seed=7, output="out/group.png")
    write_report(tmp_path / "r.json", [entry], {"model": "demo-onnx"})
    loaded = json.loads((tmp_path / "r.json").read_text())
    face0 = loaded["images"][0]["faces"][0]
    assert loaded["images"][0]["restored"] == 3 and face0["seed"] == results[0].seed
    assert set(face0) >= {"box", "score", "landmarks", "seed", "restored", "crop_size", "keep_detail"}
    written = save_faces(tmp_path / "faces", "group", results)
    assert len(written) == 9 and all(p.is_file() for p in written)


def test_no_face_comes_back_unchanged(demo_faces):
    rng = np.random.default_rng(0)
    flat = rng.integers(100, 110, (120, 160, 3), dtype=np.uint8)
    out, results = demo_faces.restore_image(flat)
    assert results == [] and out is not flat
    np.testing.assert_array_equal(out, flat)


def _face(x: float, y: float, side: float) -> Face:
    pts = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]]) * side + (x, y)
    return Face(box=[x, y, x + side, y + side], score=0.9, landmarks=pts)


def test_selection_options():
    faces = [_face(10, 10, 40), _face(300, 200, 120), _face(600, 50, 80)]
    assert select_faces(faces, 480, 800, FaceOptions()) == ["", "", ""]
    reasons = select_faces(faces, 480, 800, FaceOptions(max_faces=1))
    assert reasons[1] == "" and reasons[0] and reasons[2]
    reasons = select_faces(faces, 480, 800, FaceOptions(min_face_size=50))
    assert reasons[0].startswith("smaller") and reasons[1:] == ["", ""]
    reasons = select_faces(faces, 480, 800, FaceOptions(only_center_face=True))
    assert [r == "" for r in reasons] == [False, True, False]
    with pytest.raises(ValueError, match="max_faces"):
        FaceOptions(max_faces=-1)


def test_skipped_faces_are_reported_and_untouched():
    image = np.random.default_rng(1).integers(0, 256, (480, 800, 3), dtype=np.uint8)
    faces = [_face(10, 10, 40), _face(300, 200, 120)]
    restorer = ShiftRestorer(64, offset=30)
    ((out, results),) = FaceRestorer(restorer, options=FaceOptions(max_faces=1)).restore_faces(
        [image], [faces], [[5, 6]]
    )
    assert [r.restored for r in results] == [False, True] and restorer.calls == [1]
    assert results[0].to_dict()["reason"].startswith("over max_faces")
    chunked = ShiftRestorer(64, offset=30)
    fr = FaceRestorer(chunked, options=FaceOptions(max_batch=2))
    pairs = fr.restore_faces([image, image], [faces, faces[::-1]], [[5, 6], [6, 5]])
    assert chunked.calls == [2, 2]  # 4 faces in calls of at most 2
    np.testing.assert_array_equal(pairs[0][0], pairs[1][0])
    np.testing.assert_array_equal(out[:60, :60], image[:60, :60])


def test_restore_crops_keeps_size_and_detail():
    rng = np.random.default_rng(2)
    small, large = (rng.integers(0, 256, s, dtype=np.uint8) for s in ((64, 48, 3), (150, 130, 3)))
    fr = FaceRestorer(ShiftRestorer(64))
    out_small, out_large = fr.restore_crops([small, large], [0, 1])
    assert out_small.shape == small.shape and out_large.shape == large.shape
    np.testing.assert_array_equal(out_large, large)  # identity model + keep-detail: the input back
    off = FaceRestorer(ShiftRestorer(64), options=FaceOptions(keep_detail=False)).restore_crops([large], [1])[0]
    assert float(np.abs(off.astype(np.int16) - large).mean()) > 5  # without it, a 64 px blur


def test_degenerate_landmarks_skip_that_face_only():
    image = np.random.default_rng(4).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    bad = Face(box=[10, 10, 50, 50], score=0.9, landmarks=np.full((5, 2), 30.0))
    good = _face(120, 40, 100)
    ((out, results),) = FaceRestorer(ShiftRestorer(64)).restore_faces([image], [[bad, good]], [[1, 2]])
    assert [r.restored for r in results] == [False, True]
    assert "degenerate" in results[0].reason and out.shape == image.shape
