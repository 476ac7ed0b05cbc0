"""flipnet-rt bench's command line: every --backend, one-line errors, records written as they finish."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil

import pytest

from flipnet_rt.backends import probes
from flipnet_rt.cli.main import main
from flipnet_rt.engine.manifest import Manifest, TensorRTInfo
from flipnet_rt.profiler import flops, runner

FAST = ["--steps", "2", "--warmup", "0", "--iters", "1"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_bench_tensorrt_without_plans_is_a_usage_error(tiny_engine, capsys):
    assert main(["bench", "--model", str(tiny_engine), "--backend", "tensorrt", *FAST]) == 2
    assert f"{tiny_engine} has no TensorRT plans; build them: flipnet-rt build {tiny_engine}" in _one_line_error(capsys)


def test_bench_tensorrt_without_tensorrt_is_a_usage_error(tiny_engine, tmp_path, monkeypatch, capsys):
    engine = tmp_path / "engine"
    shutil.copytree(tiny_engine, engine)
    manifest = Manifest.load(engine)
    for name in manifest.networks:
        (engine / f"{name}.plan").write_bytes(b"plan")
    info = TensorRTInfo(
        version="10.13.0",
        gpu="H100",
        compute_capability="9.0",
        precision="fp16",
        plans={n: f"{n}.plan" for n in manifest.networks},
        profiles={},
    )
    dataclasses.replace(manifest, tensorrt=info).save(engine)
    monkeypatch.setattr(probes, "tensorrt_installed", lambda: False)  # as on this machine, stated
    assert main(["bench", "--model", str(engine), "--backend", "tensorrt", *FAST]) == 2
    assert "TensorRT is not installed: pip install 'flipnet-rt[tensorrt]'" in _one_line_error(capsys)
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error
        main(["bench", "--model", str(engine), "--backend", "tensorrt,openvino", *FAST])
    assert exit_.value.code == 2 and "--backend" in capsys.readouterr().err


def test_records_are_written_as_each_configuration_finishes(tmp_path, monkeypatch, capsys):
    """A run stopped in its third configuration keeps the first two (a GPU check's timeout), and the
    model's FLOPs are counted once (one meta-device copy), not per configuration."""
    calls, copies = [], []
    real_run, real_copy = runner.run_config, flops.meta_copy

    def run_config(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("stopped in the third configuration")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(runner, "run_config", run_config)
    monkeypatch.setattr(flops, "meta_copy", lambda model: copies.append(1) or real_copy(model))
    out = tmp_path / "b.json"
    code = main(
        [
            "bench",
            "--model",
            "random:tiny",
            "--batch",
            "1,2",
            "--cond-cache",
            "on,off",
            *FAST,
            "--json",
            str(out),
            "--csv",
            str(tmp_path / "b.csv"),
        ]
    )
    assert code == 1 and "stopped in the third configuration" in capsys.readouterr().err
    records = json.loads(out.read_text())["results"]
    assert [r["config"]["label"] for r in records] == ["b1 cache=on", "b1 cache=off"]
    assert all(r["tflops"] > 0 for r in records)
    assert [row["label"] for row in csv.DictReader((tmp_path / "b.csv").open())] == ["b1 cache=on", "b1 cache=off"]
    assert copies == [1]


@pytest.mark.slow
def test_several_backends_in_one_run(tiny_engine, tmp_path):
    out = tmp_path / "b.json"
    assert (
        main(
            [
                "bench",
                "--model",
                "random:tiny",
                "--engines",
                str(tiny_engine),
                "--backend",
                "onnxruntime,torch",
                "--device",
                "cpu",
                "--cond-cache",
                "on",
                *FAST,
                "--json",
                str(out),
            ]
        )
        == 0
    )
    records = json.loads(out.read_text())["results"]
    assert [r["config"]["label"] for r in records] == ["onnxruntime b1 cache=on", "torch b1 cache=on"]
    assert [r["environment"]["backend"] for r in records] == ["onnxruntime", "torch"]
