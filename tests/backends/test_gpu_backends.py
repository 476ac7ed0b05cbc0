"""GPU backends: TensorRT, ONNX Runtime CUDA, torch compile / CUDA graphs.

Everything that needs no GPU runs here for real: shape solving, profile checks, the TensorRT
backend's plan loading and per-shape buffer bookkeeping against a stand-in ``tensorrt`` module
(CPU tensors, a stand-in stream, outputs computed from the bound addresses), the refusals and
their messages, the torch backend's compile wiring and graph cache. What needs a GPU, TensorRT
or onnxruntime-gpu is marked and skips with the reason.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from flipnet_rt.backends.cuda import TorchDeviceArrays
from flipnet_rt.backends.tensorrt import TensorRTBackend, check_profile, trt_check
from flipnet_rt.config.presets import tiny
from flipnet_rt.engine.manifest import EngineError, Manifest, NetworkEntry, TensorRTInfo
from flipnet_rt.engine.spec import KVSpec, Profile, infer_env, network_specs, shape_key

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none is visible")
KV = [KVSpec(0, 32), KVSpec(1, 64)]
PROFILE = Profile(B=(1, 2, 4), h=(8, 8, 16), w=(8, 8, 16))
COMPILE_REASON = (
    "torch.compile (Inductor) of the tiny unet_cond took 141 s cold and 67 s with a warm Inductor "
    "cache on this project's 2 shared CPU cores (torch 2.13); set FLIPNET_TEST_COMPILE=1 to run it"
)
TORCHSCRIPT_WARNING = "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"  # importing torch._dynamo


def tiny_manifest(
    directory: Path | None = None, *, trt_version: str = "10.0.fake", plan_dtypes: dict | None = None
) -> Manifest:
    """A manifest for random:tiny's specs (two stand-in K/V layers) with a TensorRT record; writes
    stand-in plans (each network's spec as JSON) into ``directory`` when given."""
    specs = network_specs(tiny(), KV)
    networks = {n: NetworkEntry(s, PROFILE, f"{n}.onnx", "") for n, s in specs.items()}
    info = TensorRTInfo(
        version=trt_version,
        gpu="Fake GPU",
        compute_capability="9.0",
        precision="fp32",
        plans={n: f"{n}.plan" for n in specs},
        profiles={n: PROFILE.to_dict() for n in specs},
    )
    if directory is not None:
        for name, spec in specs.items():
            data = spec.to_dict()
            for t in data["outputs"]:
                t["dtype"] = (plan_dtypes or {}).get(t["name"], t["dtype"])
            (directory / f"{name}.plan").write_text(json.dumps({"name": name, **data}))
    return Manifest(
        model_name="tiny",
        config_sha256=tiny().digest(),
        precision="fp32",
        opset=18,
        resolution=64,
        networks=networks,
        versions={},
        tensorrt=info,
    )


# ------------------------------------------------------------------ pure helpers
def test_infer_env_solves_and_checks_every_input():
    spec = network_specs(tiny(), KV)["unet"]  # sample [2*B, 4, h, w], context [2*B, 77+N, D], phi [1]
    shapes = {"sample": (4, 4, 8, 6), "timestep": (4,), "context": (4, 93, 64), "phi": (1,)}
    assert infer_env(spec, shapes) == {"B": 2, "h": 8, "w": 6}
    with pytest.raises(ValueError, match=r"unet: input context has shape \(2, 93, 64\)"):
        infer_env(spec, {**shapes, "context": (2, 93, 64)})
    with pytest.raises(ValueError, match="input sample has shape"):
        infer_env(spec, {**shapes, "sample": (4, 4, 8)})
    kv = network_specs(tiny(), KV)["unet_input"]
    feeds = {
        "sample": np.zeros((2, 4, 8, 8)),
        "timestep": np.zeros(2),
        "context": np.zeros((2, 93, 64)),
        "phi": np.zeros(1),
        "k_00": np.zeros((2, 64, 32)),
        "v_00": np.zeros((2, 64, 32)),
        "k_01": np.zeros((2, 16, 64)),
        "v_01": np.zeros((2, 16, 64)),
    }
    assert infer_env(kv, {k: v.shape for k, v in feeds.items()}) == {"B": 2, "h": 8, "w": 8}
    assert shape_key(kv, feeds) == (
        "unet_input",
        ((2, 4, 8, 8), (2,), (2, 93, 64), (1,), (2, 64, 32), (2, 64, 32), (2, 16, 64), (2, 16, 64)),
    )
    with pytest.raises(ValueError, match="input k_01"):
        infer_env(kv, {**{k: v.shape for k, v in feeds.items()}, "k_01": (2, 64, 64)})


def test_profile_check_names_the_rebuild():
    spec = network_specs(tiny(), KV)["vae_decoder"]
    check_profile(spec, {"B": 4, "h": 16, "w": 8}, PROFILE, "ENG")
    with pytest.raises(EngineError, match=r"batch .* 5 is outside the plan's profile 1..4; .*build ENG --batch"):
        check_profile(spec, {"B": 5, "h": 8, "w": 8}, PROFILE, "ENG")
    with pytest.raises(EngineError, match="latent height"):
        check_profile(spec, {"B": 1, "h": 32, "w": 8}, PROFILE, "ENG")


def test_trt_check_names_the_call_and_the_logged_error():
    assert trt_check(7, "x") == 7
    logger = types.SimpleNamespace(last_error="profile 0: dimension out of range")
    with pytest.raises(RuntimeError, match=r"TensorRT unet: set_input_shape\(sample\) failed: profile 0"):
        trt_check(False, "unet: set_input_shape(sample)", logger)
    with pytest.raises(RuntimeError, match=r"deserialize_cuda_engine\(unet.plan\) failed \(run with -v"):
        trt_check(None, "deserialize_cuda_engine(unet.plan)")


def test_device_arrays_keep_the_sampler_in_float32():
    arrays = TorchDeviceArrays()
    arrays.device = "cpu"
    x = arrays.from_numpy(np.ones((2, 3), np.float64))
    assert x.dtype == torch.float32 and x.device.type == "cpu"
    assert arrays.from_numpy(np.ones(1, np.float32), "float16").dtype == torch.float16
    assert arrays.from_numpy(np.arange(3)).dtype == torch.int64
    assert arrays.to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32
    assert arrays.concat([x, x], axis=1).shape == (2, 6)


def on_gpu(value) -> bool:
    """Whether ``value`` is a device array, whichever library the backend returns: a torch tensor on
    CUDA (``.is_cuda``) or a CuPy array (always on a GPU; ``.device.id`` names it). numpy arrays,
    CPU tensors and anything else are not."""
    if isinstance(value, torch.Tensor):
        return bool(value.is_cuda)
    cupy = sys.modules.get("cupy")  # a CuPy array exists only once cupy is imported
    if cupy is not None and isinstance(value, cupy.ndarray):
        return isinstance(getattr(getattr(value, "device", None), "id", None), int)
    return False


def test_on_gpu_knows_cupy_and_torch_arrays(monkeypatch):
    """The GPU tests' check of the backends' outputs (test_onnxruntime_cuda_matches_cpu): the ONNX
    Runtime CUDA backend returns CuPy arrays, which have no ``is_cuda`` (stand-in CuPy here)."""
    from backends.cupy_standin import standin_cupy

    cupy = standin_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    assert on_gpu(cupy.asarray(np.ones((2, 3), np.float32)))
    assert not on_gpu(np.ones((2, 3), np.float32))
    assert not on_gpu(torch.ones(2))  # a CPU tensor

    class CudaLike(torch.Tensor):  # answers as a CUDA tensor does
        is_cuda = property(lambda self: True)

    assert on_gpu(torch.ones(2).as_subclass(CudaLike))


# ------------------------------------------------------------------ TensorRT against a stand-in
class _Enum:
    def __init__(self, name: str) -> None:
        self.name = name


def _view(address: int, shape: tuple, dtype: str) -> np.ndarray:
    """The host memory at ``address`` as an array (CPU tensors stand in for device buffers)."""
    count = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_char * count).from_address(address), dtype=dtype).reshape(shape)


class FakeContext:
    """IExecutionContext's documented surface. execute_async_v3 reads every input at its bound
    address and fills every output with the sum of all inputs' elements (+ the output's index)."""

    def __init__(self, engine: FakeEngine, strategy=None) -> None:
        self.engine, self.shapes, self.addresses, self.calls = engine, {}, {}, []
        self.fail_execute = False
        self.strategy, self.device_memory = strategy, None

    def set_device_memory(self, address, size):
        self.device_memory = (address, size)

    def set_input_shape(self, name, shape):
        self.calls.append(("set_input_shape", name))
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        spec = self.engine.spec
        return spec.shapes(infer_env(spec, {t.name: self.shapes[t.name] for t in spec.inputs}))[name]

    def set_tensor_address(self, name, address):
        self.calls.append(("set_tensor_address", name))
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream):
        self.calls.append(("execute_async_v3", stream))
        if self.fail_execute:
            self.engine.logger.last_error = "an injected failure"
            return False
        spec = self.engine.spec
        total = sum(float(_view(self.addresses[t.name], self.shapes[t.name], t.dtype).sum()) for t in spec.inputs)
        for i, t in enumerate(spec.outputs):
            _view(self.addresses[t.name], self.get_tensor_shape(t.name), self.engine.dtypes[t.name])[...] = total + i
        return True


class FakeEngine:
    def __init__(self, data: dict, logger) -> None:
        from flipnet_rt.engine.spec import NetworkSpec

        self.spec = NetworkSpec.from_dict(data["name"], data)
        self.logger = logger
        self.tensors = [(t["name"], "INPUT", t["dtype"]) for t in data["inputs"]] + [
            (t["name"], "OUTPUT", t["dtype"]) for t in data["outputs"]
        ]
        self.dtypes = {name: dtype for name, _, dtype in self.tensors}
        self.contexts: list[FakeContext] = []

    num_io_tensors = property(lambda self: len(self.tensors))

    def get_tensor_name(self, i):
        return self.tensors[i][0]

    def get_tensor_mode(self, name):
        return next(mode for n, mode, _ in self.tensors if n == name)

    def get_tensor_dtype(self, name):
        return _Enum({"float32": "FLOAT", "float16": "HALF"}[self.dtypes[name]])

    def create_execution_context(self, strategy=None):
        self.contexts.append(FakeContext(self, strategy))
        return self.contexts[-1]


def fake_tensorrt(version: str = "10.0.fake", user_managed: bool = False) -> types.ModuleType:
    """``user_managed``: TensorRT >= 10.1's surface for contexts sharing one scratch buffer
    (``ExecutionContextAllocationStrategy``, ``device_memory_size_v2``, ``set_device_memory``)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.engines = []
    if user_managed:
        trt.ExecutionContextAllocationStrategy = types.SimpleNamespace(STATIC=0, ON_PROFILE_CHANGE=1, USER_MANAGED=2)

    class ILogger:
        Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self):
            pass

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes):
            engine = FakeEngine(json.loads(data), self.logger)
            if user_managed:
                engine.device_memory_size_v2 = 4096
            trt.engines.append(engine)
            return trt.engines[-1]

    trt.ILogger, trt.Runtime = ILogger, Runtime
    return trt


class NullStream:
    handle = 1234

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def synchronize(self):
        pass


class ReplayContext:
    """Stands in for a captured CUDA graph: replay re-runs the enqueue of the context it was
    captured from, with the shapes and addresses that context holds (what a graph fixes)."""

    def __init__(self, context) -> None:
        self.context = context

    def replay(self):
        assert self.context.execute_async_v3(NullStream.handle)


class CpuTensorRTBackend(TensorRTBackend):
    """The TensorRT backend with CPU tensors and a stand-in stream, GPU identity and graph capture."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.device = "cpu"
        self.captures = 0

    def _gpu_identity(self):
        return "Fake GPU", "9.0"

    def _new_stream(self):
        return NullStream()

    def _capture(self, bound):
        self.captures += 1
        return ReplayContext(bound.context)


def _unet_input_feeds(batch: int, size: int = 8) -> dict[str, torch.Tensor]:
    spec = network_specs(tiny(), KV)["unet_input"]
    g = torch.Generator().manual_seed(batch * 100 + size)
    env = {"B": batch, "h": size, "w": size}
    return {t.name: torch.randn(t.concrete(env), generator=g) for t in spec.inputs}


def test_tensorrt_backend_refuses_a_directory_without_plans(tmp_path):
    manifest = tiny_manifest()
    import dataclasses

    with pytest.raises(EngineError, match=f"has no TensorRT plans; build them: `flipnet-rt build {tmp_path}`"):
        TensorRTBackend(tmp_path, dataclasses.replace(manifest, tensorrt=None))


def test_tensorrt_backend_constructs_without_tensorrt_and_says_when_it_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError, as on this machine
    backend = TensorRTBackend(tmp_path, tiny_manifest(tmp_path))  # touches nothing
    with pytest.raises(RuntimeError, match=r"TensorRT is not installed: pip install 'flipnet-rt\[tensorrt\]'"):
        backend.run("vae_decoder", {"latent": torch.zeros(1, 4, 8, 8)})


def test_tensorrt_backend_refuses_plans_for_another_version(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.9"))
    backend = CpuTensorRTBackend(tmp_path, tiny_manifest(tmp_path, trt_version="10.0.fake"))
    with pytest.raises(EngineError, match=f"TensorRT version 10.0.fake, this machine has 10.9; .*build {tmp_path}"):
        backend.run("vae_decoder", {"latent": torch.zeros(1, 4, 8, 8)})


def _expected(feeds) -> float:
    """What the stand-in plan computes: the sum of every input element."""
    return sum(float(v.sum()) for v in feeds.values())


@pytest.mark.parametrize("cuda_graph", [False, True], ids=["enqueue", "graph"])
def test_tensorrt_backend_has_one_context_per_shape(tmp_path, monkeypatch, cuda_graph):
    """Shapes A, B, A: each shape keeps its own context, shapes and addresses, so a graph captured for
    A replays against A's bindings after B ran (one shared context would replay against B's)."""
    trt = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    backend = CpuTensorRTBackend(tmp_path, tiny_manifest(tmp_path), cuda_graph=cuda_graph)
    assert trt.engines == []  # plans load lazily

    feeds_a = _unet_input_feeds(2)
    out = backend.run("unet_input", feeds_a)
    assert [e.spec.name for e in trt.engines] == ["unet_input"]  # only the network that ran
    engine = trt.engines[0]
    context_a = engine.contexts[0]
    assert out["noise_pred"].shape == (2, 4, 8, 8)
    # outputs computed from the bound input addresses, written at the bound output address
    assert torch.allclose(out["noise_pred"], torch.full_like(out["noise_pred"], _expected(feeds_a)))
    assert context_a.addresses["noise_pred"] == out["noise_pred"].data_ptr()
    assert ("execute_async_v3", NullStream.handle) in context_a.calls

    feeds_b = _unet_input_feeds(1, 16)
    other = backend.run("unet_input", feeds_b)["noise_pred"]
    assert other.shape == (1, 4, 16, 16) and other is not out["noise_pred"]
    assert len(engine.contexts) == 2 and len(backend._bound) == 2
    assert torch.allclose(other, torch.full_like(other, _expected(feeds_b)))

    context_a.calls.clear()
    feeds_a2 = _unet_input_feeds(2, 8) | {"phi": torch.full((1,), 3.0)}  # A again, new values
    again = backend.run("unet_input", feeds_a2)["noise_pred"]
    assert again is out["noise_pred"]  # a reused buffer, refreshed
    assert len(engine.contexts) == 2  # no new context, and A's was never re-pointed
    assert [c[0] for c in context_a.calls] == ["execute_async_v3"]
    assert {k: v for k, v in context_a.shapes.items()} == {k: tuple(v.shape) for k, v in feeds_a.items()}
    assert torch.allclose(again, torch.full_like(again, _expected(feeds_a2)))
    assert backend.captures == (2 if cuda_graph else 0)  # one graph per shape, replayed from then on


def test_tensorrt_contexts_of_a_plan_share_one_scratch_buffer(tmp_path, monkeypatch):
    trt = fake_tensorrt("10.9.fake", user_managed=True)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    manifest = tiny_manifest(tmp_path, trt_version="10.9.fake")
    backend = CpuTensorRTBackend(tmp_path, manifest)
    backend.run("unet_input", _unet_input_feeds(2))
    backend.run("unet_input", _unet_input_feeds(1, 16))
    a, b = trt.engines[0].contexts
    assert a.strategy == b.strategy == trt.ExecutionContextAllocationStrategy.USER_MANAGED
    assert a.device_memory == b.device_memory == (backend._plans["unet_input"].scratch.data_ptr(), 4096)


def _cond_then_input(backend, batch: int = 2):
    spec = backend.specs["unet_cond"]
    g = torch.Generator().manual_seed(7)
    env = {"B": batch, "h": 8, "w": 8}
    cond_feeds = {t.name: torch.randn(t.concrete(env), generator=g) for t in spec.inputs}
    kv = backend.run("unet_cond", cond_feeds)
    feeds = {k: v for k, v in _unet_input_feeds(batch).items() if not k.startswith(("k_", "v_"))}
    return kv, feeds


@pytest.mark.parametrize("cuda_graph", [False, True], ids=["enqueue", "graph"])
def test_tensorrt_binds_the_condition_cache_without_copies(tmp_path, monkeypatch, cuda_graph):
    """unet_input's K/V inputs are unet_cond's output buffers, bound by address: no copy per step."""
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt())
    backend = CpuTensorRTBackend(tmp_path, tiny_manifest(tmp_path), cuda_graph=cuda_graph)
    kv, feeds = _cond_then_input(backend)
    copies = []
    real_copy = torch.Tensor.copy_
    monkeypatch.setattr(torch.Tensor, "copy_", lambda self, src, *a, **k: copies.append(src) or real_copy(self, src))
    for _ in range(3):  # three steps
        out = backend.run("unet_input", {**feeds, **kv})["noise_pred"]
    bound = backend._bound[next(k for k in backend._bound if k[0] == "unet_input")]
    context = bound.context
    for name, tensor in kv.items():
        assert bound.inputs[name] is tensor and context.addresses[name] == tensor.data_ptr(), name
    assert not any(src is t for src in copies for t in kv.values())  # no K/V copied, any step
    assert len(copies) == 3 * len(feeds)  # only sample, timestep, context, phi
    assert torch.allclose(out, torch.full_like(out, _expected({**feeds, **kv})))

    # Something else fed as k_00: it gets a buffer of its own; unet_cond's output is not overwritten.
    k00 = kv["k_00"].clone()
    other = torch.ones_like(kv["k_00"])
    out = backend.run("unet_input", {**feeds, **kv, "k_00": other})["noise_pred"]
    assert bound.inputs["k_00"] is not kv["k_00"] and torch.equal(kv["k_00"], k00)
    assert context.addresses["k_00"] == bound.inputs["k_00"].data_ptr()
    assert torch.allclose(out, torch.full_like(out, _expected({**feeds, **kv, "k_00": other})))
    assert backend.captures == (2 + 1 if cuda_graph else 0)  # unet_cond, unet_input, then unet_input again


def test_tensorrt_backend_checks_profiles_plans_and_return_codes(tmp_path, monkeypatch):
    trt = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    backend = CpuTensorRTBackend(tmp_path, tiny_manifest(tmp_path, plan_dtypes={"image": "float16"}))
    with pytest.raises(EngineError, match="outside the plan's profile 1..4"):
        backend.run("unet_input", _unet_input_feeds(5))
    with pytest.raises(EngineError, match="vae_decoder.plan does not match its manifest spec"):
        backend.run("vae_decoder", {"latent": torch.zeros(1, 4, 8, 8)})
    backend.run("vae_encoder", {"image": torch.zeros(1, 3, 64, 64)})
    trt.engines[-1].contexts[0].fail_execute = True
    with pytest.raises(RuntimeError, match="TensorRT vae_encoder: execute_async_v3 failed: an injected failure"):
        backend.run("vae_encoder", {"image": torch.zeros(1, 3, 64, 64)})
    (tmp_path / "face_encoder.plan").unlink()
    with pytest.raises(EngineError, match="face_encoder.plan: missing; rebuild the plans"):
        backend.run("face_encoder", {"image": torch.zeros(1, 3, 64, 64)})


# ------------------------------------------------------------------ ONNX Runtime CUDA
def test_onnxruntime_cuda_refuses_without_the_cuda_provider(tmp_path, monkeypatch):
    from flipnet_rt.backends import probes
    from flipnet_rt.backends.base import BackendUnavailable
    from flipnet_rt.backends.onnxruntime import OnnxRuntimeCudaBackend

    monkeypatch.setattr(probes, "ort_providers", lambda: ["AzureExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(
        BackendUnavailable, match=r"no CUDAExecutionProvider .*pip install onnxruntime-gpu, or use --device cpu"
    ):
        OnnxRuntimeCudaBackend(tmp_path, tiny_manifest())
    monkeypatch.setattr(probes, "ort_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(BackendUnavailable, match="no TensorrtExecutionProvider"):
        OnnxRuntimeCudaBackend(tmp_path, tiny_manifest(), tensorrt_provider=True)


def test_onnxruntime_cuda_provider_options(tmp_path, monkeypatch):
    from flipnet_rt.backends import probes
    from flipnet_rt.backends.onnxruntime import OnnxRuntimeCudaBackend, trt_profile_options

    monkeypatch.setattr(probes, "ort_providers", lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    cuda = OnnxRuntimeCudaBackend(tmp_path, tiny_manifest(), device=1)  # touches no GPU
    assert cuda.provider_options("unet_cond", 99) == [
        ("CUDAExecutionProvider", {"device_id": "1", "user_compute_stream": "99"})
    ]
    both = OnnxRuntimeCudaBackend(tmp_path, tiny_manifest(), tensorrt_provider=True)
    (name, trt), (cuda_name, _) = both.provider_options("unet_cond", 99)
    assert (name, cuda_name) == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert trt["trt_fp16_enable"] == "false" and trt["trt_engine_cache_enable"] == "true"  # the graph's precision
    assert trt["trt_engine_cache_path"] == str(tmp_path / "ort-trt-cache")
    # the manifest's profile, per network: unet_cond's sample is [B, 4, h, w]; unet's is [2B, 4, h, w]
    assert trt_profile_options(tiny_manifest(), "unet_cond")["trt_profile_max_shapes"].startswith("sample:4x4x16x16,")
    assert trt_profile_options(tiny_manifest(), "unet")["trt_profile_min_shapes"].startswith("sample:2x4x8x8,")
    assert "phi" not in trt_profile_options(tiny_manifest(), "unet")["trt_profile_opt_shapes"]  # static


# ------------------------------------------------------------------ torch: compile and CUDA graphs
@pytest.mark.filterwarnings(TORCHSCRIPT_WARNING)
def test_torch_compile_wraps_only_the_unet_networks(tiny_model):
    from flipnet_rt.backends.torch import TorchBackend

    backend = TorchBackend(tiny_model, compile=True)  # lazy: nothing compiles until a call
    out = backend.run("vae_decoder", {"latent": torch.zeros(1, 4, 8, 8)})["image"]  # eager, unchanged
    assert out.shape == (1, 3, 64, 64)
    compiled = {n for n, f in backend._callables.items() if isinstance(f, torch._dynamo.eval_frame.OptimizedModule)}
    assert compiled == {"unet", "unet_cond", "unet_input"}


def test_torch_cuda_graphs_need_a_cuda_device(tiny_model):
    from flipnet_rt.backends.torch import TorchBackend

    with pytest.raises(ValueError, match="cuda_graphs: needs a CUDA device, not cpu"):
        TorchBackend(tiny_model, cuda_graphs=True)


def test_torch_graph_cache_reuses_static_buffers_per_shape(tiny_model):
    """The replay bookkeeping, with an eager stand-in for the captured graph (CPU)."""
    from flipnet_rt.backends.torch import TorchBackend, _Graphed

    class EagerGraph:
        def __init__(self, function, inputs, outputs):
            self.function, self.inputs, self.outputs = function, inputs, outputs

        def replay(self):
            new = self.function(*self.inputs)
            for static, value in zip(self.outputs, new if isinstance(new, tuple) else (new,)):
                static.copy_(value)

    class Backend(TorchBackend):
        captures = 0

        def _capture(self, network, inputs):
            Backend.captures += 1
            out = self._callables[network](*inputs)
            out = out if isinstance(out, tuple) else (out,)
            return _Graphed(inputs, out, EagerGraph(self._callables[network], inputs, out))

    backend = Backend(tiny_model)
    backend.cuda_graphs = True  # what a CUDA device allows
    eager = TorchBackend(tiny_model)
    g = torch.Generator().manual_seed(0)
    first, second = (torch.randn(2, 4, 8, 8, generator=g) for _ in range(2))
    a = backend.run("vae_decoder", {"latent": first})["image"]
    a_values = a.clone()
    b = backend.run("vae_decoder", {"latent": second})["image"]
    assert b is a and Backend.captures == 1  # the same static output, overwritten
    assert torch.equal(b, eager.run("vae_decoder", {"latent": second})["image"])
    assert torch.equal(a_values, eager.run("vae_decoder", {"latent": first})["image"])
    backend.run("vae_decoder", {"latent": first[:1]})
    assert Backend.captures == 2  # a new shape, a new graph


@pytest.mark.slow
@pytest.mark.filterwarnings(TORCHSCRIPT_WARNING)
@pytest.mark.skipif(os.environ.get("FLIPNET_TEST_COMPILE") != "1", reason=COMPILE_REASON)
def test_torch_compile_matches_eager_on_cpu(tiny_model):
    from flipnet_rt.backends.torch import TorchBackend

    feeds = {k: v for k, v in _cond_feeds().items()}
    eager = TorchBackend(tiny_model).run("unet_cond", feeds)
    compiled = TorchBackend(tiny_model, compile=True).run("unet_cond", feeds)
    err = max(float((compiled[k] - eager[k]).abs().max()) for k in eager)
    print(f"compiled vs eager unet_cond: max abs {err:.2e}")
    assert err < 1e-4


def _cond_feeds(device: str = "cpu", batch: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "sample": torch.randn(batch, 4, 8, 8, generator=g).to(device),
        "timestep": torch.full((batch,), 10.0, device=device),
        "context": torch.randn(batch, 93, 64, generator=g).to(device),
    }


# ------------------------------------------------------------------ on a GPU
@pytest.mark.gpu
@NEEDS_CUDA
def test_torch_cuda_graphs_match_eager_on_gpu(tiny_model):
    import copy

    from flipnet_rt.backends.torch import TorchBackend

    model = copy.deepcopy(tiny_model)
    eager = TorchBackend(model, device="cuda")
    graphed = TorchBackend(model, device="cuda", cuda_graphs=True)
    for batch in (2, 2, 1):
        feeds = _cond_feeds("cuda", batch)
        want, got = eager.run("unet_cond", feeds), graphed.run("unet_cond", feeds)
        err = max(float((got[k] - want[k]).abs().max()) for k in want)
        print(f"graphed vs eager unet_cond (B={batch}): max abs {err:.2e}")
        assert err < 1e-5
    assert len(graphed._graphs) == 2


@pytest.mark.gpu
@NEEDS_CUDA
def test_onnxruntime_cuda_matches_cpu(request):
    from flipnet_rt.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeCudaBackend
    from flipnet_rt.backends.probes import ort_providers

    if "CUDAExecutionProvider" not in ort_providers():
        pytest.skip("needs onnxruntime-gpu's CUDAExecutionProvider; this onnxruntime has " + ", ".join(ort_providers()))
    tiny_engine = request.getfixturevalue("tiny_engine")  # exported only when the test can run
    manifest = Manifest.load(tiny_engine)
    cpu, gpu = OnnxRuntimeBackend(tiny_engine, manifest), OnnxRuntimeCudaBackend(tiny_engine, manifest)
    feeds = {k: v.numpy() for k, v in _cond_feeds().items()}
    want = cpu.run("unet_cond", feeds)
    got = gpu.run("unet_cond", {k: gpu.from_numpy(v) for k, v in feeds.items()})
    assert all(on_gpu(v) for v in got.values()), {k: type(v) for k, v in got.items()}
    err = max(float(np.linalg.norm(gpu.to_numpy(got[k]) - want[k]) / np.linalg.norm(want[k])) for k in want)
    print(f"onnxruntime cuda vs cpu unet_cond: relative L2 {err:.2e}")
    # The README's fp32 bar (relative L2 < 1e-4). UNMEASURED: no GPU has run this test yet (issue 19).
    # If it fails, measure first: TF32 in ONNX Runtime's CUDA provider (use_tf32) would explain ~1e-3.
    assert err < 1e-4


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.slow
@NEEDS_CUDA
def test_tensorrt_restores_like_onnxruntime(request, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT cannot be installed on CPU-only machines")
    tiny_engine = request.getfixturevalue("tiny_engine")  # exported only when the test can run
    import shutil

    from helpers import face_like, restorer_latents

    from flipnet_rt.backends.select import select_backend
    from flipnet_rt.export.tensorrt_build import build
    from flipnet_rt.runtime.restorer import Restorer

    engine = tmp_path / "engine"
    shutil.copytree(tiny_engine, engine)
    build(engine, precision="fp32", tf32=False)  # exact fp32 plans: the 1e-4 bar below
    restorers = {}
    for kind in ("tensorrt", "onnxruntime"):
        chosen = select_backend(kind, engine_dir=engine, device="cuda" if kind == "tensorrt" else "cpu")
        restorers[kind] = Restorer(chosen.backend, chosen.config, chosen.prompts)
    options = restorers["onnxruntime"].options(steps=4)
    want, got = (restorer_latents(restorers[k], [face_like(64)], options) for k in ("onnxruntime", "tensorrt"))
    rel = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    print(f"tensorrt vs onnxruntime latents: relative L2 {rel:.2e}")
    # The README's fp32 bar (relative L2 < 1e-4). UNMEASURED: no GPU has run this test yet (issue 19).
    # Built with tf32=False; TF32 tactics (the build default) would explain ~1e-3.
    assert rel < 1e-4
