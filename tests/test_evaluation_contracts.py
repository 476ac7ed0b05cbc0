"""flipnet_rt.evaluation.scoring.evaluate without a network: a stand-in restorer records what it is asked
and answers with a known image, so every score, seed, batch and written file is checked against
scikit-image and the documented LQ synthesis in well under a second (issue 19: the end-to-end eval
tests take ~40 s each, too slow to run once per mutant)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import face_like
from PIL import Image

from flipnet_rt.config.options import SamplingOptions, image_seed
from flipnet_rt.evaluation import scoring as evaluation

skimage_metrics = pytest.importorskip("skimage.metrics")


class StandIn:
    """Restores by brightening the LQ by 10 grey levels (clipped); records each call."""

    def __init__(self, resolution: int = 32) -> None:
        self.config = SimpleNamespace(resolution=resolution)
        self.calls = []

    def options(self, seed=0):
        return SamplingOptions(seed=seed, steps=3)

    def restore(self, lqs, options, seeds):
        self.calls.append(([lq.copy() for lq in lqs], options, list(seeds)))
        return [np.clip(lq.astype(np.int16) + 10, 0, 255).astype(np.uint8) for lq in lqs]


class Identity:
    """A stand-in descriptor: the mean colour, so distances are easy to compute by hand."""

    def descriptor(self, face):
        return face.reshape(-1, 3).mean(axis=0)


def _faces(n=5, size=32):
    return [(f"dir/face{i}.jpg", face_like(size, i)) for i in range(n)]


def test_evaluate_batches_seeds_and_scores(tmp_path):
    faces = _faces()
    restorer = StandIn()
    report = evaluation.evaluate(restorer, faces, seed=7, batch_size=2, out_dir=tmp_path)
    # batches of at most 2, in order, each LQ the documented per-image synthesis
    assert [len(lqs) for lqs, _, _ in restorer.calls] == [2, 2, 1]
    lqs = [lq for call_lqs, _, _ in restorer.calls for lq in call_lqs]
    for i, ((_, hq), lq) in enumerate(zip(faces, lqs)):
        np.testing.assert_array_equal(lq, evaluation.synthesise_lq(hq, 7, i))
    assert [s for _, _, seeds in restorer.calls for s in seeds] == [image_seed(7, i) for i in range(5)]
    assert all(options == SamplingOptions(seed=7, steps=3) for _, options, _ in restorer.calls)
    # scores: scikit-image's PSNR and SSIM of the LQ and of the restored image against the HQ
    assert [s.name for s in report.images] == [name for name, _ in faces]
    for (_, hq), lq, s in zip(faces, lqs, report.images):
        out = np.clip(lq.astype(np.int16) + 10, 0, 255).astype(np.uint8)
        assert s.psnr_lq == skimage_metrics.peak_signal_noise_ratio(hq, lq, data_range=255)
        assert s.psnr == skimage_metrics.peak_signal_noise_ratio(hq, out, data_range=255)
        assert s.ssim_lq == pytest.approx(skimage_metrics.structural_similarity(hq, lq, channel_axis=2, data_range=255))
        assert s.ssim == pytest.approx(skimage_metrics.structural_similarity(hq, out, channel_axis=2, data_range=255))
        assert s.identity is None and s.identity_lq is None
    assert report.meta == {
        "seed": 7,
        "resolution": 32,
        "options": {k: getattr(v, "value", v) for k, v in dataclasses.asdict(SamplingOptions(seed=7, steps=3)).items()},
    }
    assert report.meta["options"]["sampler"] == "dpmpp-2m" and report.errors == []
    # plain values, as the --json file holds them (no enums, whose str() is "SamplerKind.DPMPP_2M")
    assert {type(v) for v in report.meta["options"].values()} <= {str, int, float}
    assert str(report.meta["options"]["spacing"]) == "leading"
    # the written images: LQ, restored, and LQ | restored | HQ side by side, named NAME.png
    lq2 = np.asarray(Image.open(tmp_path / "lq" / "dir" / "face2.png"))
    np.testing.assert_array_equal(lq2, lqs[2])
    restored2 = np.asarray(Image.open(tmp_path / "restored" / "dir" / "face2.png"))
    np.testing.assert_array_equal(restored2, np.clip(lqs[2].astype(np.int16) + 10, 0, 255))
    side = np.asarray(Image.open(tmp_path / "side_by_side" / "dir" / "face2.png"))
    np.testing.assert_array_equal(side, np.concatenate([lqs[2], restored2, faces[2][1]], axis=1))


def test_evaluate_defaults_and_identity():
    faces = _faces(n=9)
    restorer = StandIn()
    options = SamplingOptions(seed=3, steps=1)
    report = evaluation.evaluate(restorer, faces, options=options, identity=Identity())
    assert [len(lqs) for lqs, _, _ in restorer.calls] == [8, 1]  # batch_size defaults to 8
    assert all(o is options for _, o, _ in restorer.calls)
    assert [s for _, _, seeds in restorer.calls for s in seeds] == [image_seed(3, i) for i in range(9)]
    for i, (_, hq) in enumerate(faces):  # seed defaults to 0 for the LQs
        np.testing.assert_array_equal(restorer.calls[i // 8][0][i % 8], evaluation.synthesise_lq(hq, 0, i))
    s = report.images[0]
    hq, lq = faces[0][1], restorer.calls[0][0][0]
    out = np.clip(lq.astype(np.int16) + 10, 0, 255).astype(np.uint8)
    mean = lambda a: a.reshape(-1, 3).mean(axis=0)  # noqa: E731
    assert s.identity_lq == pytest.approx(float(np.linalg.norm(mean(lq) - mean(hq))), rel=1e-12)
    assert s.identity == pytest.approx(float(np.linalg.norm(mean(out) - mean(hq))), rel=1e-12)
    assert report.meta["seed"] == 0


def test_report_dict_means_and_formatting():
    scores = [
        evaluation.ImageScores("a", 20.0, 22.0, 0.5, 0.4, None, None),
        evaluation.ImageScores("b", 24.0, 25.0, 0.7, 0.6, 0.5, 0.2),
    ]
    report = evaluation.EvalReport(images=scores, errors=["x: bad"], meta={"seed": 1})
    assert report.mean("identity") == 0.2 and report.mean("psnr_lq") == 22.0  # None values skipped
    assert report.to_dict() == {
        "meta": {"seed": 1},
        "count": 2,
        "summary": {
            "psnr": {"input": 22.0, "restored": 23.5},
            "ssim": {"input": 0.6, "restored": 0.5},
            "identity": {"input": 0.5, "restored": 0.2},
        },
        "improved": {"psnr": True, "ssim": False, "identity": True},
        "errors": ["x: bad"],
        "images": [dataclasses.asdict(s) for s in scores],
    }
    equal = evaluation.EvalReport(images=[evaluation.ImageScores("c", 20.0, 20.0, 0.5, 0.5, 0.3, 0.3)])
    assert equal.improved() == {"psnr": False, "ssim": False, "identity": False}  # ties are not improvements
    assert [
        evaluation.format_value(v, k)
        for v, k in ((21.456, "psnr"), (0.123456, "ssim"), (None, "psnr"), (float("nan"), "ssim"), (0.5, "identity"))
    ] == ["21.46", "0.1235", "n/a", "n/a", "0.5000"]


def test_lq_is_the_scaled_training_degradation_on_its_own_stream():
    """The module doc: the training degradation, ranges scaled to the resolution, drawn from the
    image's seed on stream DEGRADATION_STREAM (1; 0 draws the sampling noise)."""
    from flipnet_rt.evaluation.degradations import DegradationConfig, RandomDegradation

    assert evaluation.DEGRADATION_STREAM == 1
    hq = face_like(48, 3)
    expected, _ = RandomDegradation(DegradationConfig().scaled_to(48))(hq, image_seed(5, 2, 1))
    np.testing.assert_array_equal(evaluation.synthesise_lq(hq, 5, 2), expected)


def test_progress_bar_only_when_asked(capsys):
    evaluation.evaluate(StandIn(), _faces(n=3), batch_size=2)
    assert capsys.readouterr().err == ""
    evaluation.evaluate(StandIn(), _faces(n=3), batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "eval: 100%" in err and "2/2" in err and "batch/s" in err


def test_improvement_is_unknown_when_either_mean_is_missing():
    half = evaluation.EvalReport(images=[evaluation.ImageScores("a", 20.0, 22.0, 0.5, 0.4, None, 0.3)])
    assert half.improved()["identity"] is None
    half = evaluation.EvalReport(images=[evaluation.ImageScores("a", 20.0, 22.0, 0.5, 0.4, 0.3, None)])
    assert half.improved()["identity"] is None


def test_identity_model_availability_and_weights(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    for missing, available in ((set(), True), ({"dlib"}, False), ({"face_recognition_models"}, False)):
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a, missing=missing: None if name in missing else object()
        )
        assert evaluation.IdentityModel.available() is available
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError) as info:
        evaluation._dlib_model_path()
    assert info.value.name == "face_recognition_models" and str(info.value) == "face_recognition_models"
    folder = tmp_path / "frm"
    (folder / "models").mkdir(parents=True)
    spec = SimpleNamespace(submodule_search_locations=[str(folder)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec)
    with pytest.raises(FileNotFoundError) as info:
        evaluation._dlib_model_path()
    weights = folder / "models" / "dlib_face_recognition_resnet_model_v1.dat"
    assert str(info.value) == f"{weights}: missing from face-recognition-models; reinstall it"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: SimpleNamespace(submodule_search_locations=[]))
    with pytest.raises(ImportError):
        evaluation._dlib_model_path()
    monkeypatch.setattr(importlib.util, "find_spec", real)
    if not evaluation.IdentityModel.available():
        pytest.skip("dlib-bin / face-recognition-models not installed")
    import shutil

    copy = tmp_path / "weights.dat"
    shutil.copy(evaluation._dlib_model_path(), copy)
    model = evaluation.IdentityModel(copy)
    assert model.weights == copy
    descriptor = model.descriptor(face_like(64, 0))
    assert descriptor.dtype == np.float64 and descriptor.shape == (128,)
