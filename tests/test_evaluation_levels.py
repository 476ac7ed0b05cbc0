"""``flipnet-rt eval --levels`` (issue 25): per level the input, the model's output (fidelity 0) and the
output as delivered, from one restoration per face and level; the levels themselves."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import face_like
from PIL import Image

from flipnet_rt.cli.main import main
from flipnet_rt.evaluation import scoring as evaluation
from flipnet_rt.evaluation.levels import LEVEL_CONFIGS, Level, LevelDegradation, LevelMix, parse_levels

pytest.importorskip("skimage")
pytest.importorskip("cv2")


def test_levels_get_milder_from_train_to_none():
    faces = [face_like(64, i) for i in range(6)]
    means = {}
    for level in Level:
        degrade = LevelDegradation(level)
        lqs = [degrade(hq, 100 + i)[0] for i, hq in enumerate(faces)]
        means[level] = float(np.mean([evaluation.psnr(lq, hq) for lq, hq in zip(lqs, faces)]))
    print({k.value: round(v, 2) for k, v in means.items()})
    assert math.isinf(means[Level.NONE])
    assert means[Level.MILD] > means[Level.MODERATE] > means[Level.HEAVY] > means[Level.TRAIN]
    assert LEVEL_CONFIGS[Level.TRAIN].passes == 2 and LEVEL_CONFIGS[Level.HEAVY].passes == 1


def test_a_level_mix_draws_each_level_by_its_weight_and_records_it():
    mix = LevelMix({"none": 1, "train": 3}, 32)
    face = face_like(32, 0)
    drawn = [mix(face, seed)[1] for seed in range(400)]
    share = sum(d.level is Level.TRAIN for d in drawn) / len(drawn)
    print(f"share of train: {share:.3f} (weight 0.75)")
    assert 0.68 < share < 0.82
    lq, params = mix(face, 7)
    again, _ = mix(face, 7)
    assert np.array_equal(lq, again)  # a pure function of (image, seed)
    assert params.to_dict()["level"] == params.level.value
    none = next(d for d in drawn if d.level is Level.NONE)
    assert none.params is None and none.to_dict() == {"level": "none"}
    with pytest.raises(ValueError, match="'blurry' is not a level"):
        LevelMix({"blurry": 1})
    with pytest.raises(ValueError, match="every weight is 0"):
        LevelMix({"none": 0})


def test_parse_levels():
    assert parse_levels("none, mild,train") == [Level.NONE, Level.MILD, Level.TRAIN]
    with pytest.raises(ValueError, match="'worst' is not a level; use none, mild, moderate, heavy, train"):
        parse_levels("mild,worst")


@pytest.mark.parametrize("fidelity", ["0", "1"])
def test_eval_levels_scores_the_three_variants(tmp_path, capsys, fidelity):
    hq = tmp_path / "hq"
    hq.mkdir()
    for i in range(3):
        Image.fromarray(face_like(64, 30 + i)).save(hq / f"f{i}.png")
    report = tmp_path / "levels.json"
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
            "--levels",
            "none,mild,train",
            "--fidelity",
            fidelity,
            "--json",
            str(report),
            "--batch-size",
            "2",
        ]
    )
    printed = capsys.readouterr().out
    print(printed)
    assert code == 0 and "none " in printed and "train " in printed
    data = json.loads(report.read_text())
    assert list(data["summary"]) == ["none", "mild", "train"] and data["meta"]["fidelity"] == float(fidelity)
    same = "input" if fidelity == "1" else "restored"  # W = 1 delivers the input, W = 0 the model's output
    for face in data["faces"]:
        assert face["weight"] == float(fidelity)
        assert face["psnr"]["fidelity"] == face["psnr"][same] and face["ssim"]["fidelity"] == face["ssim"][same]
        assert face["detail"]["input"] == pytest.approx(1.0)
    none = data["summary"]["none"]
    assert none["psnr"]["input"] is None and none["psnr_infinite"]["input"] == 3  # the HQ itself
    assert data["summary"]["train"]["psnr"]["input"] < data["summary"]["mild"]["psnr"]["input"]


def test_eval_levels_usage_errors(tmp_path, capsys):
    hq = tmp_path / "hq"
    hq.mkdir()
    for argv, message in (
        (["--levels", "mild,worst"], "'worst' is not a level"),
        (["--fidelity", "2"], "fidelity: '2' is outside [0, 1]"),
    ):
        assert main(["eval", "--hq", str(hq), "--model", "random:tiny", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and err.count("\n") == 0
