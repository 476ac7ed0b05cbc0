"""``flipnet-rt eval`` and :mod:`flipnet_rt.evaluation`: fixed-seed LQ, the metrics, bad files, the JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from flipnet_rt import evaluation
from flipnet_rt.cli.main import main
from helpers import face_like

pytest.importorskip("skimage")
pytest.importorskip("cv2")


def test_lq_is_a_pure_function_of_seed_and_index():
    hq = face_like(64, 0)
    a, b = evaluation.synthesise_lq(hq, 0, 3), evaluation.synthesise_lq(hq, 0, 3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == hq.shape and a.dtype == np.uint8
    assert not np.array_equal(a, evaluation.synthesise_lq(hq, 0, 4))
    assert not np.array_equal(a, evaluation.synthesise_lq(hq, 1, 3))


def test_metrics_agree_with_their_definitions():
    rng = np.random.default_rng(0)
    hq = face_like(64, 0)
    noisy = np.clip(hq + rng.normal(0, 8, hq.shape), 0, 255).astype(np.uint8)
    mse = np.mean((noisy.astype(np.float64) - hq) ** 2)
    assert evaluation.psnr(noisy, hq) == pytest.approx(10 * np.log10(255**2 / mse))
    assert evaluation.ssim(hq, hq) == pytest.approx(1.0)
    assert 0 < evaluation.ssim(noisy, hq) < 1


@pytest.mark.skipif(not evaluation.IdentityModel.available(), reason="dlib-bin / face-recognition-models not installed")
def test_identity_distance_of_dlib():
    model = evaluation.IdentityModel()
    a, b = face_like(64, 0), face_like(64, 7)[:, ::-1]
    assert model.descriptor(a).shape == (128,)
    assert model.distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert model.distance(a, b) > 0


def test_eval_command_scores_every_readable_face(tmp_path, capsys):
    hq = tmp_path / "hq"
    hq.mkdir()
    for i in range(3):
        Image.fromarray(face_like(96, i)).save(hq / f"face{i}.png")
    (hq / "broken.png").write_text("not an image")
    report = tmp_path / "eval.json"
    code = main(["eval", "--hq", str(hq), "--model", "random:tiny", "--steps", "2", "--crop", "8,8,88,88",
                 "--identity", "off", "--json", str(report), "--out", str(tmp_path / "images")])
    err = capsys.readouterr().err
    assert code == 1  # one file failed; the others were scored
    assert "broken.png" in err and err.count("error:") == 1
    data = json.loads(report.read_text())
    assert data["count"] == 3 and [s["name"] for s in data["images"]] == ["face0.png", "face1.png", "face2.png"]
    for key in ("psnr", "ssim"):
        assert set(data["summary"][key]) == {"input", "restored"}
    assert data["summary"]["identity"] == {"input": None, "restored": None}
    assert data["meta"]["crop"] == [8, 8, 88, 88] and data["meta"]["seed"] == 0
    side = np.asarray(Image.open(tmp_path / "images" / "side_by_side" / "face0.png"))
    assert side.shape == (64, 192, 3)


@pytest.mark.parametrize("argv, message", [
    (["--crop", "1,2,3"], "--crop"),
    (["--hq", "/nonexistent/folder"], "no such folder"),
])
def test_eval_usage_errors(tmp_path, capsys, argv, message):
    hq = tmp_path / "hq"
    hq.mkdir()
    args = ["eval", "--hq", str(hq), "--model", "random:tiny", *argv]
    assert main(args) == 2
    assert message in capsys.readouterr().err
