"""What the backends bind, copy and synchronise per step, shown on the CPU.

- The condition cache's K/V reach ``unet_input`` without a copy: ONNX Runtime binds ``unet_cond``'s
  output arrays by address; torch CUDA graphs read the other graph's static outputs in place
  (an eager stand-in for the captured graph); TensorRT is in test_gpu_backends.py.
- ONNX Runtime CUDA runs with ``disable_synchronize_execution_providers`` and binds device tensors
  by address (a recording stand-in for the session; the real provider is in the GPU check).
- The core builds every step's timestep tensor before the loop: no host-to-device transfer per step.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from flipnet_rt.engine.manifest import Manifest
from flipnet_rt.engine.spec import kv_names


def _cond_feeds(backend, batch: int = 2) -> dict:
    rng = np.random.default_rng(3)
    env = {"B": batch, "h": 8, "w": 8}
    spec = backend.specs["unet_cond"]
    return {
        t.name: backend.from_numpy(
            rng.standard_normal(t.concrete(env)).astype(np.float32), "float32" if t.name == "timestep" else None
        )
        for t in spec.inputs
    }


def _input_feeds(backend, cond: dict) -> dict:
    phi = backend.from_numpy(np.array([0.7], np.float32))
    return {"sample": cond["sample"], "timestep": cond["timestep"], "context": cond["context"], "phi": phi}


# ------------------------------------------------------------------ ONNX Runtime CPU
def test_onnxruntime_binds_the_condition_cache_by_address(tiny_engine, monkeypatch):
    from flipnet_rt.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(tiny_engine, Manifest.load(tiny_engine))
    cond = _cond_feeds(backend)
    kv = backend.run("unet_cond", cond)
    bound = {}
    real = ort.IOBinding.bind_input
    monkeypatch.setattr(
        ort.IOBinding,
        "bind_input",
        lambda self, name, device, index, dtype, shape, address: (
            bound.update({name: address}) or real(self, name, device, index, dtype, shape, address)
        ),
    )
    copies = []
    real_ascontiguous = np.ascontiguousarray
    monkeypatch.setattr(
        np, "ascontiguousarray", lambda a, *args, **kw: copies.append(a) or real_ascontiguous(a, *args, **kw)
    )
    out = backend.run("unet_input", {**_input_feeds(backend, cond), **kv})["noise_pred"]
    assert list(kv) == kv_names(len(kv) // 2)
    for name in kv:
        assert bound[name] == kv[name].ctypes.data, name  # read where unet_cond wrote it
    assert copies == []  # nothing converted: every feed was already float32 and contiguous
    joint = backend.run(
        "unet",
        {
            "sample": np.concatenate([cond["sample"]] * 2),
            "timestep": np.concatenate([cond["timestep"]] * 2),
            "context": np.concatenate([cond["context"]] * 2),
            "phi": np.array([0.7], np.float32),
        },
    )
    err = float(np.abs(out - joint["noise_pred"][:2]).max())
    print(f"unet_input on bound K/V vs the joint unet: max abs {err:.2e}")
    assert err < 1e-4  # the same graph split in two: float32 rounding only


def test_onnxruntime_cpu_pools_do_not_spin_unless_asked(tiny_engine):
    from flipnet_rt.backends.onnxruntime import OnnxRuntimeBackend

    manifest = Manifest.load(tiny_engine)
    quiet = OnnxRuntimeBackend(tiny_engine, manifest).session_options(ort)
    assert quiet.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = OnnxRuntimeBackend(tiny_engine, manifest, spinning=True).session_options(ort)
    with pytest.raises(Exception):  # noqa: B017 (ONNX Runtime raises its own Fail type: no entry, its default)
        spinning.get_session_config_entry("session.intra_op.allow_spinning")


# ------------------------------------------------------------------ ONNX Runtime CUDA, with a recording session
class NullStream:
    handle = 1234

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def synchronize(self):
        pass


class RecordingBinding:
    def __init__(self, log: list) -> None:
        self.log = log

    def bind_input(self, name, device, index, dtype, shape, address):
        self.log.append(("input", name, device, address))

    def bind_output(self, name, device, index, dtype, shape, address):
        self.log.append(("output", name, device, address))


class RecordingSession:
    """Stands in for an InferenceSession on the CUDA provider: records bindings and run options."""

    def __init__(self) -> None:
        self.log, self.runs = [], []

    def get_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def io_binding(self):
        return RecordingBinding(self.log)

    def run_with_iobinding(self, binding, run_options=None):
        self.runs.append(run_options)


def test_onnxruntime_cuda_binds_by_address_and_does_not_synchronise_per_run(tiny_engine, monkeypatch):
    from flipnet_rt.backends import probes
    from flipnet_rt.backends.onnxruntime import OnnxRuntimeCudaBackend

    monkeypatch.setattr(probes, "ort_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    backend = OnnxRuntimeCudaBackend(tiny_engine, Manifest.load(tiny_engine))
    backend.device = "cpu"  # torch CPU tensors stand in for device memory; the stream is a stand-in too
    backend._stream = NullStream()
    session = RecordingSession()
    monkeypatch.setattr(backend, "session", lambda network: session)
    cond = {k: torch.from_numpy(np.asarray(v)) for k, v in _cond_feeds(backend).items()}
    kv = backend.run("unet_cond", cond)
    session.log.clear()
    backend.run("unet_input", {**_input_feeds(backend, cond), **kv})
    inputs = {name: address for kind, name, _, address in session.log if kind == "input"}
    for name, tensor in kv.items():
        assert inputs[name] == tensor.data_ptr(), name  # unet_cond's output buffer itself
    run_options = session.runs[-1]
    assert run_options.get_run_config_entry("disable_synchronize_execution_providers") == "1"
    assert all(r is run_options for r in session.runs)  # made once


# ------------------------------------------------------------------ torch CUDA graphs (eager stand-in)
def test_torch_graphs_read_other_graphs_outputs_in_place(tiny_model, monkeypatch):
    from flipnet_rt.backends.torch import TorchBackend, _Graphed

    class EagerGraph:
        def __init__(self, function, inputs, outputs):
            self.function, self.inputs, self.outputs = function, inputs, outputs

        def replay(self):
            new = self.function(*self.inputs)
            for static, value in zip(self.outputs, new if isinstance(new, tuple) else (new,)):
                static.copy_(value)

    class Backend(TorchBackend):
        def _capture(self, network, inputs):
            out = self._callables[network](*inputs)
            out = out if isinstance(out, tuple) else (out,)
            return _Graphed(inputs, out, EagerGraph(self._callables[network], inputs, out))

    backend = Backend(tiny_model)
    backend.cuda_graphs = True  # what a CUDA device allows
    cond = _cond_feeds(backend)
    kv = backend.run("unet_cond", cond)
    feeds = {**_input_feeds(backend, cond), **kv}
    copied = []
    real_copy = torch.Tensor.copy_
    monkeypatch.setattr(
        torch.Tensor, "copy_", lambda self, src, *a, **k: copied.append(src) or real_copy(self, src, *a, **k)
    )
    for _ in range(3):
        out = backend.run("unet_input", feeds)["noise_pred"]
    graphed = next(g for (name, _), g in backend._graphs.items() if name == "unet_input")
    names = backend.specs["unet_input"].input_names
    for name, static in zip(names, graphed.inputs):
        assert (name in kv and static is kv[name]) == (name in kv), name
    assert not any(src is t for src in copied for t in kv.values())
    eager = TorchBackend(tiny_model).run("unet_input", feeds)["noise_pred"]
    assert torch.allclose(out, eager, atol=1e-5)

    other = {**feeds, "k_00": torch.zeros_like(kv["k_00"])}  # something else for k_00: captured again
    out = backend.run("unet_input", other)["noise_pred"]
    graphed = next(g for (name, _), g in backend._graphs.items() if name == "unet_input")
    assert graphed.inputs[names.index("k_00")] is not kv["k_00"]
    assert torch.allclose(out, TorchBackend(tiny_model).run("unet_input", other)["noise_pred"], atol=1e-5)


# ------------------------------------------------------------------ the core: no transfer per step
def test_timesteps_are_made_once_per_run(tiny_model):
    """Every host->device transfer (``from_numpy``) happens before the first UNet step."""
    from flipnet_rt.backends.torch import TorchBackend
    from flipnet_rt.config.options import Mode, SamplingOptions
    from flipnet_rt.models import PROMPT_KINDS
    from flipnet_rt.runtime.core import DiffusionCore

    events = []

    class Recording(TorchBackend):
        def from_numpy(self, array, dtype=None):
            events.append("from_numpy")
            return super().from_numpy(array, dtype)

        def run(self, network, feeds):
            events.append(network)
            return super().run(network, feeds)

    prompts = {k: tiny_model.prompt(k).float().numpy() for k in PROMPT_KINDS}
    options = SamplingOptions.from_config(tiny_model.config, steps=5)
    for cache in (True, False):
        core = DiffusionCore(Recording(tiny_model), tiny_model.config, prompts, cond_cache=cache)
        events.clear()
        pixels = np.zeros((2, 3, tiny_model.config.resolution, tiny_model.config.resolution), np.float32)
        core.latents(pixels, Mode.RESTORE, options, [1, 2])
        unet = "unet_input" if cache else "unet"
        first = events.index(unet)
        assert events.count(unet) == 5 and "from_numpy" not in events[first:], events
