"""``flipnet-train fidelity``: rounds of generated faces (each its own seed and cache) trained on together."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import face_like


def _args(model: Path, hq: Path, cache: Path, report: Path, **over) -> argparse.Namespace:
    args = dict(
        model=str(model),
        engine=None,
        hq_dir=str(hq),
        lfw_crop=False,
        faces=3,
        steps=2,
        seed=0,
        cache=str(cache),
        report=str(report),
        rounds=1,
    )
    return argparse.Namespace(**{**args, **over})


def test_rounds_add_faces_of_new_seeds_and_reuse_their_caches(tiny_model, tmp_path, monkeypatch):
    from PIL import Image

    from flipnet_rt.models.io import save_model_dir
    from flipnet_rt.train import fidelity

    model = save_model_dir(tiny_model, tmp_path / "model")
    hq = tmp_path / "hq"
    hq.mkdir()
    for i in range(8):
        Image.fromarray(face_like(96, seed=i)).save(hq / f"{i}.png")
    cache, report = tmp_path / "faces.npz", tmp_path / "report.json"

    assert fidelity.main(_args(model, hq, cache, report, rounds=2)) == 0
    assert sorted(p.name for p in tmp_path.glob("faces*.npz")) == ["faces.npz", "faces.round1.npz"]
    first, second = np.load(cache), np.load(tmp_path / "faces.round1.npz")
    assert len(first["input"]) == len(second["input"]) == 3
    assert not np.array_equal(first["input"], second["input"])  # round k draws with seed + k
    assert json.loads(report.read_text())["faces"] == 6

    def no_restorer(*args, **kwargs):
        raise AssertionError("the cached rounds must be reused, not generated again")

    monkeypatch.setattr("flipnet_rt.runtime.restorer.Restorer.load", no_restorer)
    assert fidelity.main(_args(model, hq, cache, report, rounds=2)) == 0
    assert json.loads(report.read_text())["faces"] == 6
    with pytest.raises(ValueError, match="^--rounds: 0; use 1 or more$"):
        fidelity.main(_args(model, hq, cache, report, rounds=0))
