"""The TensorRT backend on a real GPU, with a test double standing in for TensorRT itself.

TensorRT cannot be installed on the machines this project gets (not even the lent GPU machine),
so :func:`torch_tensorrt_double` builds a ``tensorrt`` module whose runtime objects have TensorRT's
documented surface (``Runtime.deserialize_cuda_engine``, ``ICudaEngine`` I/O queries and
``create_execution_context(USER_MANAGED)``, ``IExecutionContext.set_input_shape / get_tensor_shape /
set_tensor_address / set_device_memory / execute_async_v3``) and whose ``execute_async_v3(stream)``
runs the real torch network (the module TensorRT would have been built from) on
``torch.cuda.ExternalStream(stream)``, reading the inputs at the bound addresses and writing the
outputs at theirs. Everything of the backend then runs for real on the GPU: its device buffers,
its stream, one context per shape (A, B, A), K/V bound without copies, and CUDA-graph capture and
replay of ``execute_async_v3``. Compared against eager torch on the same GPU.

What it stands for is TensorRT's *contract*, not its kernels: TensorRT's own numerics and graph
capture behaviour need a machine with TensorRT (``test_tensorrt_restores_like_onnxruntime``).
The double lives here, in the tests, and nothing in ``flipnet_rt`` can reach it.
"""

from __future__ import annotations

import copy
import json
import types

import numpy as np
import pytest
import torch

from flipnet_rt.engine.manifest import Manifest, NetworkEntry, TensorRTInfo
from flipnet_rt.engine.spec import KVSpec, Profile, network_specs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none is visible"),
]

VERSION = "10.13.0+torch-double"
TYPESTR = {"float32": "<f4", "float16": "<f2", "int64": "<i8", "int32": "<i4"}
TRT_NAMES = {"float32": "FLOAT", "float16": "HALF", "int64": "INT64", "int32": "INT32"}


class _DevicePointer:
    """A view of device memory at an address, for ``torch.as_tensor`` (CUDA array interface v3)."""

    def __init__(self, address: int, shape: tuple[int, ...], dtype: str) -> None:
        self.__cuda_array_interface__ = {
            "shape": tuple(shape),
            "typestr": TYPESTR[dtype],
            "data": (address, False),
            "version": 3,
            "strides": None,
            "stream": None,
        }


class DoubleContext:
    def __init__(self, engine: DoubleEngine, strategy) -> None:
        self.engine, self.strategy = engine, strategy
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.views: dict[str, torch.Tensor] = {}
        self.device_memory = None
        self.executions = 0

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.engine.spec.shapes(self._env())[name]

    def _env(self):
        from flipnet_rt.engine.spec import infer_env

        return infer_env(self.engine.spec, {t.name: self.shapes[t.name] for t in self.engine.spec.inputs})

    def set_tensor_address(self, name, address):
        # The view is made here, before any capture: nothing but kernels runs inside a CUDA graph.
        shape = self.shapes[name] if name in self.shapes else self.get_tensor_shape(name)
        self.views[name] = torch.as_tensor(
            _DevicePointer(address, shape, self.engine.dtypes[name]), device=self.engine.device
        )
        return True

    def set_device_memory(self, address, size):
        assert size >= self.engine.device_memory_size_v2
        self.device_memory = (address, size)

    def execute_async_v3(self, stream_handle):
        spec = self.engine.spec
        with torch.cuda.stream(torch.cuda.ExternalStream(stream_handle, device=self.engine.device)):
            with torch.inference_mode():
                out = self.engine.module(*(self.views[t.name] for t in spec.inputs))
            for t, value in zip(spec.outputs, out if isinstance(out, tuple) else (out,)):
                self.views[t.name].copy_(value)
        self.executions += 1
        return True


class DoubleEngine:
    device_memory_size_v2 = 1 << 20

    def __init__(self, spec, module, device) -> None:
        self.spec, self.module, self.device = spec, module, device
        self.dtypes = {t.name: t.dtype for t in (*spec.inputs, *spec.outputs)}
        self.tensors = [(t.name, "INPUT") for t in spec.inputs] + [(t.name, "OUTPUT") for t in spec.outputs]
        self.contexts: list[DoubleContext] = []

    num_io_tensors = property(lambda self: len(self.tensors))

    def get_tensor_name(self, i):
        return self.tensors[i][0]

    def get_tensor_mode(self, name):
        return dict(self.tensors)[name]

    def get_tensor_dtype(self, name):
        return types.SimpleNamespace(name=TRT_NAMES[self.dtypes[name]])

    def create_execution_context(self, strategy=None):
        self.contexts.append(DoubleContext(self, strategy))
        return self.contexts[-1]


def torch_tensorrt_double(model, specs, device: str = "cuda") -> types.ModuleType:
    """A ``tensorrt`` module whose plans are ``{"network": name}`` and whose engines run ``model``'s
    network modules (:data:`flipnet_rt.models.networks.NETWORKS`) on ``device``."""
    from flipnet_rt.models.networks import NETWORKS

    trt = types.ModuleType("tensorrt")
    trt.__version__ = VERSION
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.ExecutionContextAllocationStrategy = types.SimpleNamespace(STATIC=0, ON_PROFILE_CHANGE=1, USER_MANAGED=2)
    trt.engines = {}

    class ILogger:
        Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self):
            pass

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes):
            name = json.loads(data)["network"]
            engine = trt.engines[name] = DoubleEngine(specs[name], NETWORKS[name](model).eval(), device)
            return engine

    trt.ILogger, trt.Runtime = ILogger, Runtime
    return trt


def _engine_dir(directory, model, kv) -> Manifest:
    """An engine directory for ``model`` with a TensorRT record for this GPU and the double's version."""
    specs = network_specs(model.config, kv)
    profile = Profile(B=(1, 2, 8), h=(model.config.latent_size,) * 3, w=(model.config.latent_size,) * 3)
    props = torch.cuda.get_device_properties(0)
    for name in specs:
        (directory / f"{name}.plan").write_text(json.dumps({"network": name}))
    info = TensorRTInfo(
        version=VERSION,
        gpu=props.name,
        compute_capability=f"{props.major}.{props.minor}",
        precision="fp32",
        plans={n: f"{n}.plan" for n in specs},
        profiles={n: profile.to_dict() for n in specs},
        tf32=False,
    )
    return Manifest(
        model_name=model.config.name,
        config_sha256=model.config.digest(),
        precision="fp32",
        opset=18,
        resolution=model.config.resolution,
        versions={},
        networks={n: NetworkEntry(s, profile, f"{n}.onnx", "") for n, s in specs.items()},
        tensorrt=info,
    )


@pytest.mark.parametrize("cuda_graph", [False, True], ids=["enqueue", "graph"])
def test_tensorrt_backend_on_the_gpu_matches_eager_torch(tiny_model, tmp_path, monkeypatch, cuda_graph):
    import sys

    from flipnet_rt.backends.tensorrt import TensorRTBackend
    from flipnet_rt.backends.torch import TorchBackend
    from flipnet_rt.config.options import Mode, SamplingOptions
    from flipnet_rt.models import PROMPT_KINDS
    from flipnet_rt.models.networks import kv_layout
    from flipnet_rt.runtime.core import DiffusionCore

    model = copy.deepcopy(tiny_model).to("cuda").eval().requires_grad_(False)
    kv = [KVSpec(layer.level, layer.channels) for layer in kv_layout(model)]
    specs = network_specs(model.config, kv)
    trt = torch_tensorrt_double(model, specs)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    manifest = _engine_dir(tmp_path, model, kv)
    prompts = {k: model.prompt(k).float().cpu().numpy() for k in PROMPT_KINDS}
    backend = TensorRTBackend(tmp_path, manifest, cuda_graph=cuda_graph)
    cores = {
        "tensorrt": DiffusionCore(backend, model.config, prompts),
        "eager": DiffusionCore(TorchBackend(model, device="cuda"), model.config, prompts),
    }
    options = SamplingOptions.from_config(model.config, steps=4)
    r = model.config.resolution
    rng = np.random.default_rng(0)
    for label, batch, seeds in (("A", 2, [1, 2]), ("B", 1, [3]), ("A again", 2, [4, 5])):
        pixels = rng.uniform(-1, 1, (batch, 3, r, r)).astype(np.float32)
        got, want = (cores[k].latents(pixels, Mode.RESTORE, options, seeds) for k in ("tensorrt", "eager"))
        rel = float(np.linalg.norm(got - want) / np.linalg.norm(want))
        nans = int(np.isnan(got).sum())
        print(
            f"TensorRT backend (torch double, graphs {'on' if cuda_graph else 'off'}) vs eager, shape {label}: "
            f"relative L2 {rel:.2e}, NaN {nans}"
        )
        # The same torch kernels on the same GPU in both: only the graph's replay and the buffers
        # differ, so any difference beyond float noise (1e-5) means wrong bindings or stream order.
        assert nans == 0 and rel < 1e-5
    unet_input = trt.engines["unet_input"]
    assert len(unet_input.contexts) == 2  # one per shape, A's reused for "A again"
    assert all(c.strategy == trt.ExecutionContextAllocationStrategy.USER_MANAGED for c in unet_input.contexts)
    assert len({c.device_memory for c in unet_input.contexts}) == 1  # one shared scratch buffer
    bound = [b for k, b in backend._bound.items() if k[0] == "unet_input"]
    assert all(b.aliased == {t.name for t in specs["unet_cond"].outputs} for b in bound)  # K/V: no copies
    if cuda_graph:
        assert all(b.graph is not None for b in backend._bound.values())
        assert all(c.executions == 2 for c in unet_input.contexts)  # warm-up + capture; replays after
    backend.close()
