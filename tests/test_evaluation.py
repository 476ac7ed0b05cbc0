"""``flipnet-rt eval`` and :mod:`flipnet_rt.evaluation.scoring`: fixed-seed LQ, the metrics, bad files, the JSON."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers import face_like
from PIL import Image

from flipnet_rt.cli.main import main
from flipnet_rt.evaluation import scoring as evaluation

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
    code = main(
        [
            "eval",
            "--hq",
            str(hq),
            "--model",
            "random:tiny",
            "--steps",
            "2",
            "--crop",
            "8,8,88,88",
            "--identity",
            "off",
            "--json",
            str(report),
            "--out",
            str(tmp_path / "images"),
        ]
    )
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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--crop", "1,2,3"], "--crop"),
        (["--hq", "/nonexistent/folder"], "no such folder"),
    ],
)
def test_eval_usage_errors(tmp_path, capsys, argv, message):
    hq = tmp_path / "hq"
    hq.mkdir()
    args = ["eval", "--hq", str(hq), "--model", "random:tiny", *argv]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_eval_scores_are_those_of_the_images_it_writes(tmp_path, capsys):
    """PSNR recomputed (numpy, from its definition) from the ``--out`` images, LQ and restored
    against the HQ panel, equals the JSON's per-image scores and the summary's means, each under
    its own name (issue 19: a summary with input and restored swapped passed before)."""
    hq = tmp_path / "hq"
    hq.mkdir()
    for i in range(3):
        Image.fromarray(face_like(64, 20 + i)).save(hq / f"f{i}.png")
    out, report = tmp_path / "images", tmp_path / "eval.json"
    code = main(
        [
            "eval",
            "--hq",
            str(hq),
            "--model",
            "random:tiny",
            "--steps",
            "2",
            "--identity",
            "off",
            "--json",
            str(report),
            "--out",
            str(out),
            "--batch-size",
            "2",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    data = json.loads(report.read_text())
    psnr_in, psnr_out = [], []
    for scores in data["images"]:
        name = scores["name"]
        lq, restored = (np.asarray(Image.open(out / kind / name)) for kind in ("lq", "restored"))
        side = np.asarray(Image.open(out / "side_by_side" / name))
        np.testing.assert_array_equal(side[:, :64], lq)
        np.testing.assert_array_equal(side[:, 64:128], restored)
        reference = side[:, 128:]
        np.testing.assert_array_equal(reference, np.asarray(Image.open(hq / name)))  # 64 px: no resize
        psnr_in.append(_psnr(lq, reference))
        psnr_out.append(_psnr(restored, reference))
        assert scores["psnr_lq"] == pytest.approx(psnr_in[-1], abs=1e-9)
        assert scores["psnr"] == pytest.approx(psnr_out[-1], abs=1e-9)
        assert scores["ssim_lq"] == pytest.approx(evaluation.ssim(lq, reference), abs=1e-12)
        assert scores["ssim"] == pytest.approx(evaluation.ssim(restored, reference), abs=1e-12)
    print(f"recomputed PSNR input {np.mean(psnr_in):.3f} dB, restored {np.mean(psnr_out):.3f} dB")
    assert abs(np.mean(psnr_in) - np.mean(psnr_out)) > 0.1, "the two must differ for the check to mean anything"
    summary = data["summary"]["psnr"]
    assert summary["input"] == pytest.approx(np.mean(psnr_in), abs=1e-9)
    assert summary["restored"] == pytest.approx(np.mean(psnr_out), abs=1e-9)
    assert data["improved"]["psnr"] is bool(np.mean(psnr_out) > np.mean(psnr_in))
    ssim = data["summary"]["ssim"]
    assert ssim["input"] == pytest.approx(np.mean([s["ssim_lq"] for s in data["images"]]), abs=1e-12)
    assert ssim["restored"] == pytest.approx(np.mean([s["ssim"] for s in data["images"]]), abs=1e-12)
    # the printed table: the PSNR row reads input then restored, to 2 decimals
    row = next(line for line in printed.splitlines() if "PSNR" in line)
    numbers = [float(v) for v in re.findall(r"-?\d+\.\d+", row)]
    assert numbers == [round(np.mean(psnr_in), 2), round(np.mean(psnr_out), 2)], row


def test_report_summary_and_improvement_by_hand():
    scores = [
        evaluation.ImageScores("a", psnr_lq=20.0, psnr=22.0, ssim_lq=0.5, ssim=0.4, identity_lq=0.3, identity=0.5),
        evaluation.ImageScores("b", psnr_lq=24.0, psnr=25.0, ssim_lq=0.7, ssim=0.6, identity_lq=0.5, identity=0.2),
    ]
    report = evaluation.EvalReport(images=scores)
    assert report.summary() == {
        "psnr": {"input": 22.0, "restored": 23.5},
        "ssim": {"input": 0.6, "restored": 0.5},
        "identity": {"input": 0.4, "restored": 0.35},
    }
    assert report.improved() == {"psnr": True, "ssim": False, "identity": True}  # identity: lower is better
    assert evaluation.EvalReport().improved() == {"psnr": None, "ssim": None, "identity": None}


def test_eval_scores_at_the_faces_own_size(tmp_path):
    """``--size`` scores at the input's size: HQ, LQ and restored are all 96 px (1.5x the 64 px model).
    Keep-detail is ``input + up(restored - down(input))``, without it ``up(restored)``: the two
    outputs differ by the input's own band above the model's, ``input - up(down(input))``."""
    import cv2

    hq = tmp_path / "hq"
    hq.mkdir()
    for i in range(2):
        Image.fromarray(face_like(96, 30 + i)).save(hq / f"f{i}.png")
    outputs = {}
    for keep in (True, False):
        out, report = tmp_path / f"images{keep}", tmp_path / f"eval{keep}.json"
        flags = [] if keep else ["--no-keep-detail"]
        assert (
            main(
                [
                    "eval",
                    "--hq",
                    str(hq),
                    "--model",
                    "random:tiny",
                    "--steps",
                    "2",
                    "--identity",
                    "off",
                    "--size",
                    "96",
                    "--json",
                    str(report),
                    "--out",
                    str(out),
                    *flags,
                ]
            )
            == 0
        )
        meta = json.loads(report.read_text())["meta"]
        assert meta["size"] == 96 and meta["keep_detail"] is keep
        outputs[keep] = np.asarray(Image.open(out / "restored" / "f0.png")).astype(np.float32)
        lq = np.asarray(Image.open(out / "lq" / "f0.png"))
        assert outputs[keep].shape == lq.shape == (96, 96, 3)
    small = cv2.resize(lq, (64, 64), interpolation=cv2.INTER_AREA)
    band = lq.astype(np.float32) - cv2.resize(small.astype(np.float32), (96, 96), interpolation=cv2.INTER_CUBIC)
    diff = outputs[True] - outputs[False]
    corr = float(np.corrcoef(diff.ravel(), band.ravel())[0, 1])
    print(
        f"keep-detail minus plain vs the input's band: correlation {corr:.3f}, mean |diff| "
        f"{np.abs(diff).mean():.2f}, band mean |value| {np.abs(band).mean():.2f} grey levels"
    )
    # the same signal up to uint8 rounding (twice) and clipping; without keep-detail diff is 0
    assert corr > 0.8
