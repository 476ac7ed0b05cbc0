"""flipnet_rt.evaluation.scoring.evaluate_levels without a network (issue 25's ``eval --levels``): a stand-in
face restorer records what it is asked and answers with known images and weights, so every seed,
batch, variant and score is checked against the documented synthesis and scikit-image/OpenCV in well
under a second (the end-to-end tests in tests/test_evaluation_levels.py check the wiring, not the values).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import face_like

from flipnet_rt.config.options import SamplingOptions, image_seed
from flipnet_rt.evaluation import scoring as evaluation
from flipnet_rt.evaluation.levels import Level, LevelDegradation
from flipnet_rt.faces.fidelity import Weights, blend

skimage_metrics = pytest.importorskip("skimage.metrics")
cv2 = pytest.importorskip("cv2")


class StandInFaces:
    """A FaceRestorer's eval surface: restores by darkening 20 grey levels (clipped), gives face k of
    each call the weight 0.25 * k (so 0, a blend and the input all occur); records each call."""

    def __init__(self, fidelity="auto") -> None:
        self.options = SimpleNamespace(fidelity=fidelity)
        self.restorer = SimpleNamespace(options=lambda seed=0: SamplingOptions(seed=seed, steps=2))
        self.calls = []

    def restore_crops_weighted(self, crops, seeds, options):
        self.calls.append(([c.copy() for c in crops], list(seeds), options))
        outs = [np.clip(c.astype(np.int16) - 20, 0, 255).astype(np.uint8) for c in crops]
        return outs, Weights([0.25 * k for k in range(len(crops))], "estimator")


class MeanColour:
    """A stand-in identity descriptor (the mean colour); counts the HQ faces it describes."""

    def __init__(self) -> None:
        self.seen = []

    def descriptor(self, face):
        self.seen.append(face)
        return face.reshape(-1, 3).mean(axis=0)


def _faces(n=5, size=32):
    return [(f"d/f{i}.png", face_like(size, 40 + i)) for i in range(n)]


def test_every_face_at_every_level_in_batches_with_its_own_seeds():
    faces, restorer = _faces(), StandInFaces()
    levels = [Level.MILD, "train"]
    report = evaluation.evaluate_levels(restorer, faces, levels, seed=9, batch_size=2)
    # per level, batches of at most 2 in order; every level draws face i's LQ from the same seed
    assert [len(crops) for crops, _, _ in restorer.calls] == [2, 2, 1, 2, 2, 1]
    sent = [c for crops, _, _ in restorer.calls for c in crops]
    for j, level in enumerate(["mild", "train"]):
        degrade = LevelDegradation(level)
        for i, (_, hq) in enumerate(faces):
            want, _ = degrade(hq, image_seed(9, i, evaluation.DEGRADATION_STREAM))
            np.testing.assert_array_equal(sent[j * 5 + i], want)
    # sampling noise: the options' seed (the eval seed when none are given), face index i
    options = SamplingOptions(seed=9, steps=2)
    assert [s for _, seeds, _ in restorer.calls for s in seeds] == [image_seed(9, i) for i in range(5)] * 2
    assert all(o == options for _, _, o in restorer.calls)
    assert report.meta == {
        "seed": 9,
        "levels": ["mild", "train"],
        "fidelity": "auto",
        "options": {k: getattr(v, "value", v) for k, v in dataclasses.asdict(options).items()},
    }
    # plain values, as the --json file holds them (no enums, whose str() is "Level.MILD")
    assert [type(v) for v in report.meta["levels"]] == [str, str]
    assert {type(v) for v in report.meta["options"].values()} <= {str, int, float}
    assert [(s.name, s.level) for s in report.faces] == [(n, lv) for lv in ("mild", "train") for n, _ in faces]
    assert [s.weight for s in report.faces] == [0.0, 0.25, 0.0, 0.25, 0.0] * 2


def test_each_variant_is_scored_against_the_hq():
    faces, restorer = _faces(3), StandInFaces()
    identity = MeanColour()
    report = evaluation.evaluate_levels(
        restorer, faces, [Level.HEAVY, Level.MILD], seed=3, batch_size=3, identity=identity
    )
    sent = [c for crops, _, _ in restorer.calls for c in crops]
    assert len(identity.seen) == 3 + 2 * 3 * 3  # each HQ once (shared by the levels), every variant's image
    for k, ((_, hq), lq, scores) in enumerate(zip(faces * 2, sent, report.faces)):
        out = np.clip(lq.astype(np.int16) - 20, 0, 255).astype(np.uint8)
        images = {"input": lq, "restored": out, "fidelity": blend(lq, out, 0.25 * (k % 3))}
        assert list(scores.psnr) == list(scores.ssim) == list(scores.detail) == ["input", "restored", "fidelity"]
        base = evaluation.detail(lq)
        for variant, image in images.items():
            assert scores.psnr[variant] == skimage_metrics.peak_signal_noise_ratio(hq, image, data_range=255)
            assert scores.ssim[variant] == pytest.approx(
                skimage_metrics.structural_similarity(hq, image, channel_axis=2, data_range=255)
            )
            assert scores.detail[variant] == pytest.approx(evaluation.detail(image) / base)
            want = np.linalg.norm(image.reshape(-1, 3).mean(0) - hq.reshape(-1, 3).mean(0))
            assert scores.identity[variant] == pytest.approx(want)
    assert report.faces[0].psnr["fidelity"] == report.faces[0].psnr["restored"]  # W = 0: the output itself


def test_defaults_without_identity_or_options(capsys):
    """No options: the restorer's own at the eval seed; no identity model: None; a flat LQ has no detail
    to compare with (NaN, not a division by zero), an almost flat one has (a ratio); batch size 8 by
    default; no progress bar unasked, tqdm's when asked."""
    flat = np.full((32, 32, 3), 128, np.uint8)
    almost = flat.copy()
    almost[10, 10] += 1  # a Laplacian variance of 0.02
    faces, restorer = [("flat", flat), ("almost", almost), *_faces(9)[2:]], StandInFaces(fidelity=0.5)
    report = evaluation.evaluate_levels(restorer, faces, [Level.NONE])
    assert [len(crops) for crops, _, _ in restorer.calls] == [8, 1]
    assert restorer.calls[0][2] == SamplingOptions(seed=0, steps=2) and report.meta["fidelity"] == 0.5
    assert all(v is None for s in report.faces for v in s.identity.values())
    assert all(math.isnan(v) for v in report.faces[0].detail.values())
    assert 0 < evaluation.detail(almost) < 1 and report.faces[1].detail["restored"] == 1.0  # same edges, darker
    assert math.isinf(report.faces[2].psnr["input"])  # level none: the HQ itself
    assert capsys.readouterr().err == ""
    evaluation.evaluate_levels(restorer, faces[:1], [Level.NONE], progress=True)
    bar = capsys.readouterr().err
    assert bar.startswith("\reval: ") and "1/1 [" in bar and "batch/s]" in bar


def test_the_summary_counts_and_averages_each_level():
    report = evaluation.LevelsReport()
    for level, weight, psnr in (("mild", 0.2, 30.0), ("mild", 0.4, math.inf), ("train", 1.0, 20.0)):
        values = {v: psnr for v in evaluation.VARIANTS}
        report.faces.append(evaluation.LevelScores("f", level, weight, dict(values), dict(values), {}, dict(values)))
    summary = report.summary()
    assert list(summary) == ["mild", "train"]
    mild = summary["mild"]
    assert mild["count"] == 2 and mild["weight"] == pytest.approx(0.3)
    assert mild["psnr"]["input"] == 30.0 and mild["psnr_infinite"] == {v: 1 for v in evaluation.VARIANTS}
    assert mild["identity"] == {v: None for v in evaluation.VARIANTS}
    assert summary["train"]["count"] == 1 and summary["train"]["psnr_infinite"]["fidelity"] == 0
    assert report.to_dict() == {
        "meta": {},
        "summary": summary,
        "faces": [dataclasses.asdict(s) for s in report.faces],
    }
    assert report.to_dict()["faces"][2]["weight"] == 1.0


def test_detail_is_the_laplacian_variance_of_the_grey_image():
    image = face_like(48, 5)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    want = float(cv2.Laplacian(grey, cv2.CV_32F).var())
    print(f"detail {evaluation.detail(image):.3f}")
    assert evaluation.detail(image) == want and want > 0


def test_psnr_of_identical_images_is_infinite_without_a_warning():
    image = face_like(32, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isinf(evaluation.psnr(image, image.copy()))
