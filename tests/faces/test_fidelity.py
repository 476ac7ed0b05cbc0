"""Per-face fidelity (issue 25): the blend is exact at W = 0 and W = 1, pixels outside the paste masks
never change, the weights reach the results and the report, and a bad value is one line."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from faces.support import ShiftRestorer

from flipnet_rt.faces.fidelity import AUTO, FidelityChooser, blend, parse_fidelity
from flipnet_rt.faces.paste import paste_faces
from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer


@pytest.mark.parametrize(
    "value, expected", [("auto", AUTO), (" AUTO ", AUTO), ("0", 0.0), ("1", 1.0), ("0.35", 0.35), (0.5, 0.5), (1, 1.0)]
)
def test_fidelity_values(value, expected):
    assert parse_fidelity(value) == expected


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "inf", "", "high", True, None])
def test_a_bad_fidelity_is_one_line_naming_the_fix(value):
    with pytest.raises(ValueError) as info:
        parse_fidelity(value)
    message = str(info.value)
    print(message)
    assert "\n" not in message and message.startswith("fidelity: ") and "[0, 1]" in message and "auto" in message
    with pytest.raises(ValueError, match="^fidelity: "):
        FaceOptions(fidelity=value)


def test_blend_is_exact_at_both_ends_and_rounds_between():
    rng = np.random.default_rng(0)
    face, restored = (rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) for _ in range(2))
    assert blend(face, restored, 0.0) is restored
    one = blend(face, restored, 1.0)
    assert np.array_equal(one, face) and one is not face
    half = blend(face, restored, 0.5)
    expected = np.rint((face.astype(np.float64) + restored) / 2)
    assert np.abs(half - expected).max() <= 1  # float32 arithmetic, rounded half to even
    w = 0.3
    mixed = blend(face, restored, w).astype(np.float64)
    exact = w * face + (1 - w) * restored
    print(f"W = 0.3: max |blend - exact| = {np.abs(mixed - exact).max():.3f} grey levels")
    assert np.abs(mixed - exact).max() <= 0.5 + 1e-4
    with pytest.raises(ValueError, match="differ"):
        blend(face, restored[:10], 0.5)


class EstimatingRestorer(ShiftRestorer):
    """ShiftRestorer with a stand-in estimator at the Restorer seam: W = mean input grey / 255."""

    has_fidelity = True

    def __init__(self, resolution: int = 64, offset: int = 0) -> None:
        super().__init__(resolution, offset)
        self.fidelity_calls: list[int] = []

    def fidelity(self, inputs, restored):
        assert all(a.shape == (self.config.resolution,) * 2 + (3,) for a in (*inputs, *restored))
        self.fidelity_calls.append(len(inputs))
        return np.array([float(x.mean()) / 255.0 for x in inputs], np.float32)


def _run(restorer, image, faces, fidelity):
    fr = FaceRestorer(restorer, options=FaceOptions(fidelity=fidelity, max_batch=2))
    return fr.restore_faces([image], [faces], [[7 + i for i in range(len(faces))]])[0]


def test_weight_zero_is_the_restoration_and_one_the_input_crop_pasted(astronaut_group):
    image, faces = astronaut_group
    restorer = ShiftRestorer(64, offset=40)
    zero, results0 = _run(restorer, image, faces, 0.0)
    one, results1 = _run(restorer, image, faces, 1.0)
    for r0, r1 in zip(results0, results1):
        assert r0.fidelity == 0.0 and r1.fidelity == 1.0 and r0.fidelity_source == r1.fidelity_source == "fixed"
        if r0.crop_size == 64:  # the shift restorer's output at R: the aligned input + 40, nothing blended in
            assert np.array_equal(r0.output, np.clip(r0.aligned.astype(np.int16) + 40, 0, 255).astype(np.uint8))
        assert np.array_equal(r1.output, r1.aligned)  # bit for bit the input crop
    by_area = sorted(
        results1, key=lambda r: ((r.face.box[2] - r.face.box[0]) * (r.face.box[3] - r.face.box[1]), r.index)
    )
    assert np.array_equal(one, paste_faces(image, [r.aligned for r in by_area], [r.affine for r in by_area]))
    assert not np.array_equal(zero, one)


def test_pixels_outside_the_masks_stay_the_inputs_at_every_weight(astronaut_group):
    image, faces = astronaut_group
    restorer = ShiftRestorer(64, offset=40)
    _, results = _run(restorer, image, faces, 0.0)
    # the masks' support: white crops pasted onto a black picture
    white = [np.full_like(r.aligned, 255) for r in results]
    support = np.any(paste_faces(np.zeros_like(image), white, [r.affine for r in results]) > 0, axis=2)
    for w in (0.0, 0.25, 0.5, 0.9, 1.0):
        out, _ = _run(restorer, image, faces, w)
        changed = np.any(out != image, axis=2)
        print(f"W = {w}: {changed.sum()} pixels changed, {support.sum()} inside the masks")
        assert not np.any(changed & ~support)
        assert changed.sum() > 0


def test_auto_asks_the_estimator_in_batches_and_records_its_weights(astronaut_group):
    image, faces = astronaut_group
    restorer = EstimatingRestorer(64, offset=40)
    _, results = _run(restorer, image, faces, "auto")
    assert restorer.fidelity_calls == [2, 1]  # max_batch 2, as the core's calls
    for r in results:
        w = float(np.float32(r.aligned.mean() / 255.0)) if r.crop_size == 64 else r.fidelity
        assert r.fidelity_source == "estimator" and 0.0 < r.fidelity < 1.0
        assert r.to_dict()["fidelity"] == round(r.fidelity, 4) and r.to_dict()["fidelity_source"] == "estimator"
        if r.crop_size == 64:
            assert r.fidelity == pytest.approx(w)
            plain = np.clip(r.aligned.astype(np.int16) + 40, 0, 255).astype(np.uint8)
            assert np.array_equal(r.output, blend(r.aligned, plain, r.fidelity))


def test_auto_without_an_estimator_keeps_the_restoration_and_says_so(astronaut_group, caplog):
    image, faces = astronaut_group
    restorer = ShiftRestorer(64, offset=40)
    with caplog.at_level(logging.WARNING, logger="flipnet_rt.faces.fidelity"):
        auto, results = _run(restorer, image, faces, "auto")
    assert "no fidelity estimator" in caplog.text and "flipnet-train fidelity" in caplog.text
    assert all(r.fidelity == 0.0 and r.fidelity_source == "none" for r in results)
    assert np.array_equal(auto, _run(restorer, image, faces, 0.0)[0])
    assert not FidelityChooser(restorer, "auto").blends and FidelityChooser(restorer, 0.2).blends


@pytest.mark.parametrize("size", [40, 64, 100, 200])
def test_aligned_crops_blend_at_their_own_size(size):
    """``--aligned``: W = 1 gives the crop back bit for bit, W = 0 what the core alone gives."""
    rng = np.random.default_rng(size)
    crop = rng.integers(0, 256, (size, size + 6, 3), dtype=np.uint8)
    restorer = ShiftRestorer(64, offset=30)
    one = FaceRestorer(restorer, options=FaceOptions(fidelity=1.0)).restore_crops([crop], [1])[0]
    assert np.array_equal(one, crop)
    zero = FaceRestorer(restorer, options=FaceOptions(fidelity=0.0, keep_detail=False)).restore_crops([crop], [1])[0]
    assert np.array_equal(zero, restorer.restore([crop])[0])  # the core's own size policy, untouched
    half = FaceRestorer(restorer, options=FaceOptions(fidelity=0.5)).restore_crops([crop], [1])[0]
    assert half.shape == crop.shape


def test_given_crops_must_have_the_planned_size(astronaut_group):
    """``restore_faces(aligned=...)``: video hands in crops filtered along each track."""
    image, faces = astronaut_group
    fr = FaceRestorer(ShiftRestorer(64))
    crops = [fr.aligned_crop(image, f) for f in faces]
    ((out, results),) = fr.restore_faces([image], [faces], [[1, 2, 3]], aligned=[crops])
    ((plain, _),) = fr.restore_faces([image], [faces], [[1, 2, 3]])
    assert np.array_equal(out, plain)  # the crops it would have warped itself
    with pytest.raises(ValueError, match="aligned: image 0 face 0 is 10x10"):
        fr.restore_faces([image], [faces], [[1, 2, 3]], aligned=[[np.zeros((10, 10, 3), np.uint8)] + crops[1:]])
