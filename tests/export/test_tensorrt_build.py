"""``flipnet-rt build`` across TensorRT 10.x (weakly typed) and 11.x (strongly typed), without TensorRT.

TensorRT cannot be installed here, so ``tensorrt`` is a stand-in module per version whose
``BuilderFlag`` follows that version's API: 10.x has ``FP16``/``BF16``/``TF32``; 11.x removed every
weak-typing flag (``FP16``, ``BF16``, ``INT8``, ...; NVIDIA's 10.x->11.x migration guide) and keeps
``TF32``. Polygraphy's real ``CreateConfig`` runs against it, so these tests fail where
Polygraphy would reach for a flag the version lacks (as it did with ``fp16=True`` on 11.x).
Only the ONNX parse and the engine build itself are stood in for (they need a GPU).
"""

from __future__ import annotations

import importlib
import shutil
import sys
import types

import pytest

from flipnet_rt.cli.main import main
from flipnet_rt.engine.manifest import Manifest
from flipnet_rt.export import tensorrt_build
from flipnet_rt.export.tensorrt_build import build, build_mode, create_config_flags

polygraphy_trt = pytest.importorskip("polygraphy.backend.trt", reason="Polygraphy is in the export extra")

WEAK_TYPING_FLAGS = ("FP16", "BF16", "INT8", "FP8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS")
COMMON_FLAGS = ("TF32", "REFIT", "DIRECT_IO", "SPARSE_WEIGHTS", "STRIP_PLAN", "VERSION_COMPATIBLE")


class FakeBuilderConfig:
    """IBuilderConfig's surface that CreateConfig touches; records the flags it ends up with."""

    def __init__(self) -> None:
        self.flags = {"TF32"}  # TensorRT's own default: TF32 on
        self.profiles, self.profiling_verbosity = [], None

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)

    def create_timing_cache(self, data):
        return data

    def set_timing_cache(self, cache, ignore_mismatch=False):
        return True


def fake_tensorrt(version: str) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    major = int(version.split(".")[0])
    names = COMMON_FLAGS + (WEAK_TYPING_FLAGS if major < 11 else ())
    trt.BuilderFlag = types.SimpleNamespace(**{n: n for n in names})
    trt.ProfilingVerbosity = types.SimpleNamespace(DETAILED="DETAILED")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED="STRONGLY_TYPED")
    trt.Builder = lambda logger=None: types.SimpleNamespace(create_builder_config=FakeBuilderConfig)
    return trt


@pytest.fixture(params=["10.13.0", "11.0.0"])
def trt(request, monkeypatch):
    """The stand-in TensorRT of one version, where ``import tensorrt`` and Polygraphy look for it."""
    module = fake_tensorrt(request.param)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    for name in ("polygraphy.backend.trt.config", "polygraphy.backend.trt.util"):
        monkeypatch.setattr(importlib.import_module(name), "trt", module)  # Polygraphy's lazily imported module
    return module


def _configured(trt, **flags) -> set[str]:
    """The flags Polygraphy's real CreateConfig leaves on a builder config of this version."""
    config = polygraphy_trt.CreateConfig(**flags)(trt.Builder(), None)
    return config.flags


# ------------------------------------------------------------------ the version decides
def test_build_mode_follows_the_version():
    assert build_mode("10.13.0", "fp16", "fp32") == tensorrt_build.BuildMode("10.13.0", False, True, False, True)
    assert build_mode("10.0.1", "bf16", "fp32").bf16
    assert build_mode("11.2.0", "fp16", "fp16") == tensorrt_build.BuildMode("11.2.0", True, False, False, True)
    assert build_mode("11.2.0", "fp32", "fp32", has_tf32_flag=False).tf32 is False
    assert build_mode("10.13.0", "fp32", "fp32", tf32=False).tf32 is False


@pytest.mark.parametrize("version", ["9.3.0", "12.0.0"])
def test_versions_outside_the_pinned_range_are_refused(version):
    with pytest.raises(
        ValueError,
        match=rf"TensorRT {version} is not supported \(10.x and 11.x are\): "
        r"pip install 'tensorrt>=10.0,<12'",
    ):
        build_mode(version, "fp16", "fp32")


def test_tensorrt_11_builds_at_the_graphs_precision():
    with pytest.raises(
        ValueError,
        match=r"--precision fp16: TensorRT 11.0.0 builds plans at their ONNX graphs' "
        r"precision \(fp32 here.*flipnet-rt export --model MODEL --precision fp16",
    ):
        build_mode("11.0.0", "fp16", "fp32")
    with pytest.raises(ValueError, match="--precision bf16"):
        build_mode("11.0.0", "bf16", "fp16")


def test_pyproject_pins_the_supported_range():
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    pins = re.search(r'^tensorrt = \[\s*"tensorrt([^"]*)"', text, re.M)
    majors = tensorrt_build.SUPPORTED_MAJORS
    assert pins and pins.group(1) == f">={min(majors)}.0,<{max(majors) + 1}"


# ------------------------------------------------------------------ Polygraphy's CreateConfig, per version
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_create_config_sets_only_flags_the_version_has(trt, precision):
    mode = build_mode(trt.__version__, precision, precision)
    flags = _configured(trt, **create_config_flags(mode))
    print(f"TensorRT {trt.__version__}, {precision}: {sorted(flags)}")
    assert "TF32" in flags  # decided: TF32 on (Polygraphy would clear it)
    if trt.__version__.startswith("10."):
        assert ("FP16" in flags) == (precision == "fp16") and not mode.strongly_typed
    else:
        assert mode.strongly_typed and not flags & set(WEAK_TYPING_FLAGS)


def test_the_old_fp16_flag_fails_on_tensorrt_11(trt):
    """The defect: CreateConfig(fp16=True) on 11.x raises (FP16 is gone); the builder no longer asks."""
    from polygraphy.exception import PolygraphyException

    if trt.__version__.startswith("10."):
        assert "FP16" in _configured(trt, fp16=True)
    else:
        with pytest.raises(PolygraphyException, match="fp16 in CreateConfig is not available on TensorRT version 11"):
            _configured(trt, fp16=True)


def test_tf32_off_is_cleared(trt):
    assert "TF32" not in _configured(trt, tf32=False)


# ------------------------------------------------------------------ build(), end to end on the stand-in
@pytest.fixture
def engine(tiny_engine, tmp_path):
    directory = tmp_path / "engine"
    shutil.copytree(tiny_engine, directory)
    return directory


@pytest.fixture
def builder(trt, monkeypatch):
    """Stand in for the GPU steps (ONNX parse, engine build, GPU identity); CreateConfig runs for real."""
    calls = []

    def network_from_onnx_path(path, strongly_typed=False):
        calls.append(("network", path, strongly_typed))
        return lambda: (trt.Builder(), None, None)

    def engine_from_network(network, config, save_timing_cache=None):
        builder, net, _ = network()
        calls.append(("config", sorted(config(builder, net).flags)))
        return b"plan"

    def save_engine(engine, path):
        open(path, "wb").write(engine)

    monkeypatch.setattr(polygraphy_trt, "network_from_onnx_path", network_from_onnx_path)
    monkeypatch.setattr(polygraphy_trt, "engine_from_network", engine_from_network)
    monkeypatch.setattr(polygraphy_trt, "save_engine", save_engine)
    monkeypatch.setattr(tensorrt_build, "gpu_identity", lambda: ("Fake GPU", "9.0"))
    return calls


def test_build_records_typing_and_tf32_in_the_manifest(engine, trt, builder):
    manifest = build(engine, precision="fp32", networks=["vae_decoder"])
    record = Manifest.load(engine).tensorrt
    assert record == manifest.tensorrt and record.version == trt.__version__
    assert record.tf32 is True and record.strongly_typed is trt.__version__.startswith("11.")
    assert (engine / "vae_decoder.plan").read_bytes() == b"plan"
    (_, path, strongly_typed), (_, flags) = builder
    assert path.endswith("vae_decoder.onnx") and strongly_typed is record.strongly_typed
    assert "TF32" in flags and "FP16" not in flags


def test_build_failures_are_one_line(engine, trt, builder, monkeypatch, capsys):
    from polygraphy.exception import PolygraphyException

    def fails(network, config, save_timing_cache=None):
        raise PolygraphyException("Invalid Engine. Please ensure the engine was built correctly\nmore detail")

    monkeypatch.setattr(polygraphy_trt, "engine_from_network", fails)
    with pytest.raises(
        RuntimeError,
        match=rf"^vae_decoder: TensorRT {trt.__version__} could not build "
        r"vae_decoder.onnx: Invalid Engine. Please ensure .*correctly \(run with",
    ):
        build(engine, precision="fp32", networks=["vae_decoder"])
    assert main(["build", str(engine), "--precision", "fp32"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "could not build" in err
    if trt.__version__.startswith("11."):  # fp16 plans from fp32 graphs: a usage error naming the export
        assert main(["build", str(engine), "--precision", "fp16"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "flipnet-rt export --model MODEL --precision fp16" in err


def test_build_without_tensorrt_is_a_usage_error(engine, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError, as on this machine
    assert main(["build", str(engine)]) == 2
    err = capsys.readouterr().err.strip()
    print(err)
    assert err.count("\n") == 0
    assert "TensorRT is not installed: pip install 'flipnet-rt[tensorrt]'" in err
