"""Opening what --model names (flipnet_rt.engine.artifacts): once, checked, for every caller."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flipnet_rt.config.model import ConfigError
from flipnet_rt.engine.artifacts import (
    EngineArtifacts,
    ModelArtifacts,
    is_engine_dir,
    open_artifacts,
    open_engine,
    read_engine,
    read_manifest,
)
from flipnet_rt.engine.manifest import EngineError


def test_an_engine_directory_is_opened_and_checked(tiny_engine, tiny_config):
    engine = open_engine(tiny_engine)
    assert engine.config == tiny_config
    assert set(engine.prompts) == {"restore", "negative", "degrade"}
    assert engine.prompts["restore"].shape == (77, tiny_config.text_width)
    assert engine.missing_plans() == sorted(engine.manifest.networks, key=list(engine.manifest.networks).index)
    assert is_engine_dir(tiny_engine) and not is_engine_dir("random:tiny") and not is_engine_dir(tiny_engine / "x")


@pytest.mark.parametrize(
    "damage, error, message",
    [
        (lambda d: (d / "prompts.npz").unlink(), EngineError, r"prompts.npz: missing; re-export"),
        # same size, so the manifest's file check passes and the config's own parse must refuse it
        (
            lambda d: (d / "flipnet.json").write_text("{" + " " * (len((d / "flipnet.json").read_text()) - 1)),
            ConfigError,
            r"flipnet.json: not valid JSON",
        ),
        (
            lambda d: (d / "manifest.json").write_text(json.dumps({"format_version": 99})),
            EngineError,
            r"format_version 99 is not 1; re-export",
        ),
    ],
    ids=["prompts", "config", "manifest"],
)
def test_every_part_is_checked_with_a_fix(tiny_engine, tmp_path, damage, error, message):
    copy = tmp_path / "engine"
    shutil.copytree(tiny_engine, copy)
    damage(copy)
    with pytest.raises(error, match=message):
        open_artifacts(copy)


def test_partial_reads_run_the_same_checks(tmp_path):
    """build reads the manifest, export-triton the manifest and config, a Triton repository's
    engine/ folder (no networks) everything but the network files: each through the same checks.
    On the shipped engine (a copy, 27 MB): the mutation group runs this test once per mutant, where
    exporting random:tiny (tiny_engine) took a minute each time."""
    from flipnet_rt.config.model import FlipnetConfig

    shipped = Path(__file__).resolve().parents[2] / "models" / "demo-onnx"
    copy = tmp_path / "engine"
    shutil.copytree(shipped, copy)
    manifest, config = read_manifest(copy), FlipnetConfig.load(shipped)
    assert read_engine(copy) == (manifest, config) and config.resolution == 64
    onnx = copy / next(iter(manifest.networks.values())).onnx
    onnx.unlink()
    for read in (read_manifest, read_engine, open_engine):
        with pytest.raises(EngineError, match=r"missing; re-export the engine directory"):
            read(copy)
    assert read_manifest(copy, network_files=False) == manifest
    small = open_engine(copy, network_files=False)
    assert small.config == config and set(small.prompts) == {"restore", "negative", "degrade"}
    (copy / "prompts.npz").unlink()
    assert read_engine(copy, network_files=False)[1] == config  # the prompts are open_engine's
    with pytest.raises(EngineError, match=r"prompts.npz: missing; re-export"):
        open_engine(copy, network_files=False)


def test_a_model_is_not_loaded_until_used():
    code = (
        "import sys\nfrom flipnet_rt.engine.artifacts import open_artifacts\n"
        "m = open_artifacts('random:tiny')\nprint(type(m).__name__, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["ModelArtifacts", "False"], done.stderr[-400:]


def test_a_loaded_model_is_loaded_once(tiny_model):
    artifacts = ModelArtifacts(tiny_model)
    assert artifacts.load() is tiny_model and artifacts.load() is tiny_model
    assert isinstance(open_artifacts(artifacts), ModelArtifacts) and open_artifacts(artifacts) is artifacts
    assert not isinstance(artifacts, EngineArtifacts)
