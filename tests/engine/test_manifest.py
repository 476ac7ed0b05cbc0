"""flipnet_rt.engine.manifest without an export: checks with their exact fixes, the JSON form, and
load/save errors (issue 19: the engine group's fast tests; tests/engine/test_artifacts.py covers a
real exported directory)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from flipnet_rt.config.presets import tiny
from flipnet_rt.engine.manifest import (
    FORMAT_VERSION,
    EngineError,
    Manifest,
    NetworkEntry,
    TensorRTInfo,
    load_prompts,
    save_prompts,
)
from flipnet_rt.engine.spec import Dim, NetworkSpec, Profile, TensorSpec

CONFIG = tiny()
SPEC = NetworkSpec(
    "vae_decoder",
    (TensorSpec("latent", "float32", (Dim.parse("B"), Dim(4), Dim.parse("h"), Dim.parse("w"))),),
    (TensorSpec("image", "float32", (Dim.parse("B"), Dim(3), Dim.parse("8*h"), Dim.parse("8*w"))),),
)
PROFILE = Profile(B=(1, 1, 2), h=(8, 8, 8), w=(8, 8, 8))
TRT = TensorRTInfo(
    version="10.0",
    gpu="H200",
    compute_capability="9.0",
    precision="fp16",
    plans={"vae_decoder": "vae_decoder.plan"},
    profiles={"vae_decoder": PROFILE.to_dict()},
)


def _manifest(**changes) -> Manifest:
    base = Manifest(
        model_name="tiny",
        config_sha256=CONFIG.digest(),
        precision="fp32",
        opset=17,
        resolution=64,
        networks={"vae_decoder": NetworkEntry(SPEC, PROFILE, "vae_decoder.onnx", "ab" * 32)},
        versions={"torch": "2.5"},
        files={"vae_decoder.onnx": {"bytes": 5, "sha256": "x"}},
        extra={"note": 1},
    )
    return dataclasses.replace(base, **changes)


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(EngineError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_another_model_is_refused_with_the_export_command():
    _manifest().check_model(CONFIG, "E")
    other = dataclasses.replace(CONFIG, latent_scaling=0.5)
    d, o = CONFIG.digest()[:12], other.digest()[:12]
    assert _message(_manifest().check_model, other, "E") == (
        f"E: exported from model config tiny ({d}), not from this model ({other.name}, {o}); "
        "re-export it with `flipnet-rt export --model <model> -o E`"
    )
    assert _message(_manifest().check_model, other).endswith("-o ENGINE_DIR`")


def test_plans_from_elsewhere_are_refused_naming_the_mismatch():
    m = _manifest(tensorrt=TRT)
    m.check_tensorrt("E", version="10.0", gpu="H200", compute_capability="9.0")
    rebuild = "rebuild them here: `flipnet-rt build E`"
    assert _message(_manifest().check_tensorrt, "E", version="10.0", gpu="H200", compute_capability="9.0") == (
        f"E: has no TensorRT plans; {rebuild}"
    )
    for kwargs, what, theirs, ours in (
        (dict(version="10.1", gpu="H200", compute_capability="9.0"), "TensorRT version", "10.0", "10.1"),
        (dict(version="10.0", gpu="A100", compute_capability="9.0"), "GPU", "H200", "A100"),
        (dict(version="10.0", gpu="H200", compute_capability="8.0"), "compute capability", "9.0", "8.0"),
    ):
        assert _message(m.check_tensorrt, "E", **kwargs) == (
            f"E: plans were built for {what} {theirs}, this machine has {ours}; {rebuild}"
        )


def test_recorded_files_are_checked_for_place_and_size(tmp_path: Path):
    (tmp_path / "vae_decoder.onnx").write_bytes(b"12345")
    _manifest().check_files(tmp_path)
    root = tmp_path.resolve()
    assert _message(_manifest(files={"../x.onnx": {"bytes": 1}}).check_files, tmp_path) == (
        f"{tmp_path}/../x.onnx: points outside the engine directory; refusing it"
    )
    assert _message(_manifest(files={"gone.onnx": {"bytes": 1}}).check_files, tmp_path) == (
        f"{root / 'gone.onnx'}: missing; re-export the engine directory"
    )
    (tmp_path / "sub").mkdir()
    assert _message(_manifest(files={"sub": {"bytes": 1}}).check_files, tmp_path) == (
        f"{root / 'sub'}: missing; re-export the engine directory"
    )  # a folder is not the file
    assert _message(_manifest(files={"vae_decoder.onnx": {"bytes": "6"}}).check_files, tmp_path) == (
        f"{root / 'vae_decoder.onnx'}: 5 bytes, the manifest says 6; the file is truncated or from another "
        "export; re-export"
    )


def test_json_form_round_trips():
    m = _manifest(tensorrt=TRT)
    d = m.to_dict()
    assert d == {
        "format_version": FORMAT_VERSION,
        "model": {"name": "tiny", "config_sha256": CONFIG.digest()},
        "precision": "fp32",
        "opset": 17,
        "resolution": 64,
        "networks": {
            "vae_decoder": {
                "onnx": "vae_decoder.onnx",
                "weights_sha256": "ab" * 32,
                "profile": PROFILE.to_dict(),
                **SPEC.to_dict(),
            }
        },
        "versions": {"torch": "2.5"},
        "files": {"vae_decoder.onnx": {"bytes": 5, "sha256": "x"}},
        "tensorrt": {
            "version": "10.0",
            "gpu": "H200",
            "compute_capability": "9.0",
            "precision": "fp16",
            "plans": {"vae_decoder": "vae_decoder.plan"},
            "profiles": {"vae_decoder": PROFILE.to_dict()},
            "strongly_typed": False,
            "tf32": False,
        },
        "extra": {"note": 1},
    }
    assert Manifest.from_dict(json.loads(json.dumps(d))) == m
    assert Manifest.from_dict(_manifest().to_dict()).tensorrt is None
    bare = _manifest().to_dict()
    del bare["files"], bare["extra"], bare["tensorrt"]
    assert Manifest.from_dict(bare) == _manifest(files={}, extra={})


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format_version=2), "m.json: format_version 2 is not 1; re-export with this flipnet-rt"),
        (lambda d: d.pop("format_version"), "m.json: format_version None is not 1; re-export with this flipnet-rt"),
        (lambda d: d.pop("opset"), "m.json: malformed manifest (KeyError: 'opset'); re-export"),
        (
            lambda d: d.update(opset="x"),
            "m.json: malformed manifest (ValueError: invalid literal for int() with base 10: 'x'); re-export",
        ),
        (
            lambda d: d["tensorrt"].update(extra_field=1),
            "m.json: malformed manifest (TypeError: TensorRTInfo.__init__() got an unexpected keyword argument "
            "'extra_field'); re-export",
        ),
        (
            lambda d: d["networks"]["vae_decoder"]["profile"].update(B=[2, 1, 1]),
            "m.json: malformed manifest (ValueError: profile.B: need 1 <= min <= opt <= max, got 2:1:1); re-export",
        ),
    ],
)
def test_malformed_manifests_are_refused(edit, message):
    d = json.loads(json.dumps(_manifest(tensorrt=TRT).to_dict()))
    edit(d)
    assert _message(Manifest.from_dict, d, "m.json") == message


def test_save_and_load(tmp_path: Path):
    m = _manifest(tensorrt=TRT)
    path = m.save(tmp_path)
    assert path == tmp_path / "manifest.json" and path.read_text().endswith("}\n")
    assert json.loads(path.read_text()) == m.to_dict()
    assert Manifest.load(tmp_path) == m
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary file left
    missing = tmp_path / "none"
    assert _message(Manifest.load, missing) == (
        f"{missing / 'manifest.json'}: not found; create an engine directory with "
        f"`flipnet-rt export --model DIR -o {missing}`"
    )
    path.write_text('{"a": 1,\n oops}')
    assert (
        _message(Manifest.load, tmp_path)
        == f"{path}: not valid JSON (Expecting property name enclosed in double quotes at line 2)"
    )
    path.write_text(json.dumps({"format_version": 1}))
    assert _message(Manifest.load, tmp_path) == f"{path}: malformed manifest (KeyError: 'networks'); re-export"


def test_a_failed_save_leaves_no_temporary_file(tmp_path: Path):
    m = _manifest(extra={"bad": object()})  # not JSON: fails before anything is written
    with pytest.raises(TypeError):
        m.save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_prompts_round_trip_as_float32(tmp_path: Path):
    prompts = {"restore": np.arange(6, dtype=np.float64).reshape(2, 3), "degrade": np.ones((2, 3), np.float16)}
    save_prompts(tmp_path, prompts)
    loaded = load_prompts(tmp_path)
    assert set(loaded) == {"restore", "degrade"}
    for k, v in prompts.items():
        assert loaded[k].dtype == np.float32
        np.testing.assert_array_equal(loaded[k], v)
    assert (
        _message(load_prompts, tmp_path / "none")
        == f"{tmp_path / 'none' / 'prompts.npz'}: missing; re-export the engine directory"
    )
    (tmp_path / "prompts.npz").write_bytes(b"not a zip")
    assert _message(load_prompts, tmp_path).startswith(f"{tmp_path / 'prompts.npz'}: unreadable (")
    assert _message(load_prompts, tmp_path).endswith("); re-export the engine directory")


def test_models_load_once_through_load_model(monkeypatch, tmp_path: Path):
    import flipnet_rt.models as models
    from flipnet_rt.engine.artifacts import ModelArtifacts

    calls = []
    monkeypatch.setattr(models, "load_model", lambda source: calls.append(source) or f"model of {source}")
    artifacts = ModelArtifacts(tmp_path / "m")
    assert artifacts.load() == f"model of {tmp_path / 'm'}" and artifacts.load() == f"model of {tmp_path / 'm'}"
    assert calls == [str(tmp_path / "m")]


def test_a_model_spec_is_never_an_engine_directory(monkeypatch, tmp_path: Path):
    """``random:CONFIG`` names a model even where a folder of that name holds a manifest."""
    from flipnet_rt.engine.artifacts import is_engine_dir

    monkeypatch.chdir(tmp_path)
    for name in ("random:tiny", "engine"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
    assert not is_engine_dir("random:tiny") and is_engine_dir("engine") and is_engine_dir(tmp_path / "engine")
    assert not is_engine_dir(tmp_path)


def test_the_manifest_is_written_atomically(monkeypatch, tmp_path: Path):
    """Written to a hidden ``.manifest.json.*.tmp`` beside it and renamed over it (a rename is atomic
    only within one folder); when the rename fails the temporary file is removed."""
    import os

    import flipnet_rt.engine.manifest as manifest_module

    real_replace, moves = os.replace, []

    def replace(src, dst):
        moves.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(manifest_module.os, "replace", replace)
    _manifest().save(tmp_path)
    ((src, dst),) = moves
    assert dst == tmp_path / "manifest.json" and src.parent == tmp_path
    assert src.name.startswith(".manifest.json.") and src.name.endswith(".tmp")

    def failing(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(manifest_module.os, "replace", failing)
    with pytest.raises(OSError, match="No space left"):
        _manifest(opset=18).save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    assert Manifest.load(tmp_path).opset == 17  # the previous manifest is intact


REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_engine_matches_the_specs_and_names_its_directory(tmp_path: Path):
    """models/demo-onnx, exported by an earlier commit: its manifest's network specs are what
    network_specs makes today for its config and K/V layout; a manifest from another config is
    refused naming the directory."""
    import json
    import shutil

    from flipnet_rt.config.model import FlipnetConfig
    from flipnet_rt.engine.artifacts import open_engine
    from flipnet_rt.engine.spec import KVSpec, network_specs

    shipped = REPO / "models" / "demo-onnx"
    manifest, config = Manifest.load(shipped), FlipnetConfig.load(shipped)
    levels = {"h*w": 0, "h*w/4": 1, "h*w/16": 2, "h*w/64": 3}  # K/V of h*w / 4**level tokens
    kv = [
        KVSpec(level=levels[str(t.shape[1])], channels=int(str(t.shape[2])))
        for t in manifest.networks["unet_cond"].spec.outputs[::2]
    ]
    specs = network_specs(config, kv, "float32", fidelity="fidelity" in manifest.networks)
    for name, entry in manifest.networks.items():
        assert entry.spec.to_dict() == specs[name].to_dict(), name
    # the joint UNet (not in this export): the feeds DiffusionCore gives it without the condition cache
    assert specs["unet"].input_names == ["sample", "timestep", "context", "phi"]
    assert specs["unet"].output_names == ["noise_pred"]
    assert [str(d) for d in specs["unet"].input("phi").shape] == ["1"]  # np.array([phi]), one value
    assert [str(d) for d in specs["unet"].input("context").shape] == [
        "2*B",
        str(config.context_tokens),
        str(config.text_width),
    ]
    copy = tmp_path / "engine"
    shutil.copytree(shipped, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["model"]["config_sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(EngineError) as info:
        open_engine(copy)
    assert str(info.value).startswith(f"{copy}: exported from model config ")
    assert str(info.value).endswith(f"re-export it with `flipnet-rt export --model <model> -o {copy}`")
