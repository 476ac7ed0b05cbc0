"""``flipnet-rt verify`` fails on numbers (issue 19, hole 4): an engine whose weights were edited
in place, at the same size (so the cheap file check lets it through), is reported FAILED with exit
status 1; and :class:`flipnet_rt.export.verify.Report` passes only when every check and every PSNR does."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from flipnet_rt.cli.main import main

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def edit_weights(path: Path, scale: float = 1.25) -> str:
    """Scale the largest float32 initializer of an ONNX file in place, keeping the file's size."""
    from onnx import numpy_helper

    size = path.stat().st_size
    model = onnx.load(str(path))
    init = max(
        (t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and t.raw_data),
        key=lambda t: len(t.raw_data),
    )
    init.raw_data = (numpy_helper.to_array(init) * np.float32(scale)).astype(np.float32).tobytes()
    onnx.save(model, str(path))
    assert path.stat().st_size == size, "the edit must keep the size, or the file check refuses it first"
    return init.name


@pytest.fixture(scope="module")
def edited_engine(tiny_engine, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("edited") / "engine"
    shutil.copytree(tiny_engine, copy)
    edit_weights(copy / "vae_decoder.onnx")
    return copy


@pytest.mark.slow  # exports random:tiny (session fixture) and runs torch + ORT
def test_verify_fails_an_engine_with_edited_weights(edited_engine, capsys):
    code = main(["verify", str(edited_engine), "--model", "random:tiny", "--steps", "2"])
    out = capsys.readouterr().out
    print(out)
    assert code == 1
    assert out.strip().splitlines()[-1] == "verify: FAILED"
    rows = {
        line.split()[1]: line
        for line in out.splitlines()
        if line.startswith("onnxruntime") and not line.split()[1].startswith("end-to-end")
    }
    assert rows["vae_decoder"].endswith("FAIL"), rows
    assert all(row.endswith("ok") for name, row in rows.items() if name != "vae_decoder"), rows
    # (random:tiny's decoded images are mostly clipped to black/white, so the end-to-end PSNR of
    # this edit stays high, ~60 dB measured: the per-network check is the one that catches it.)
    assert any("end-to-end PSNR" in line for line in out.splitlines()), out


@pytest.mark.slow  # exports random:tiny (session fixture) and runs torch + ORT
def test_verify_passes_the_untouched_engine(tiny_engine, capsys):
    code = main(["verify", str(tiny_engine), "--model", "random:tiny", "--steps", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.strip().splitlines()[-1] == "verify: passed"
    assert "FAIL" not in out


def _check(rel_l2: float, limit: float = 1e-4):
    from flipnet_rt.export.verify import Check

    return Check("onnxruntime", "unet", 0.0, rel_l2, limit, rel_l2 <= limit)


@pytest.mark.parametrize(
    "checks, psnr, passed",
    [
        ([1e-6, 1e-5], {"onnxruntime": 45.0}, True),
        ([1e-6, 1e-4], {"onnxruntime": 40.0}, True),  # limits are inclusive
        ([1e-6, 2e-4], {"onnxruntime": 45.0}, False),  # one network over its limit
        ([1e-6, 1e-5], {"onnxruntime": 39.9}, False),  # end to end under the PSNR limit
        ([1e-6], {"onnxruntime": 45.0, "tensorrt": 12.0}, False),  # any backend's PSNR
        ([], {}, True),
    ],
)
def test_report_passes_only_when_every_check_does(checks, psnr, passed):
    from flipnet_rt.export.verify import Report

    report = Report(checks=[_check(c) for c in checks], psnr_db=psnr, psnr_limit=40.0)
    assert report.passed is passed
    lines = report.lines()
    assert ("FAIL" in " ".join(lines)) is (not passed)
