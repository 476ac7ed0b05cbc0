"""UNet step per backend on random:tiny (``make bench``): the condition cache and the backends compared.

One step with guidance at batch 1: the joint graph on ``[x x2; y x2]`` (4 samples) against the
cached path's ``unet_input`` on ``[x x2]`` (2 samples), on PyTorch eager and ONNX Runtime CPU.
Report ratios from one run; absolute times on this shared machine mean little.
"""

from __future__ import annotations

import numpy as np
import pytest

from flipnet_rt.models import random_model


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    from flipnet_rt.backends.onnxruntime import OnnxRuntimeBackend
    from flipnet_rt.backends.torch import TorchBackend
    from flipnet_rt.engine.manifest import Manifest
    from flipnet_rt.export.exporter import export_engine

    out = tmp_path_factory.mktemp("engine") / "tiny"
    export_engine(random_model("tiny"), out, max_batch=2, networks=("unet", "unet_cond", "unet_input"))
    return {"torch": TorchBackend(random_model("tiny")), "onnxruntime": OnnxRuntimeBackend(out, Manifest.load(out))}


def _feeds(backend, network: str, n: int, kv=None):
    rng = np.random.default_rng(0)
    spec = backend.specs[network]
    env = {"B": n, "h": 8, "w": 8}
    feeds = {}
    for t in spec.inputs:
        if kv is not None and t.name in kv:
            feeds[t.name] = kv[t.name]
            continue
        value = np.full(t.concrete(env), 500.0) if t.name == "timestep" else rng.standard_normal(t.concrete(env))
        feeds[t.name] = backend.from_numpy(value.astype(np.float32), "float32" if t.name == "timestep" else None)
    return feeds


@pytest.mark.parametrize("backend_name", ["torch", "onnxruntime"])
@pytest.mark.parametrize("path", ["joint", "cached"])
def test_unet_step(benchmark, backends, backend_name, path):
    backend = backends[backend_name]
    benchmark.group = f"unet step ({path})"
    if path == "joint":
        feeds = _feeds(backend, "unet", 2)  # 2B = 4: [x (2 branches); y (2 branches)]
        benchmark(backend.run, "unet", feeds)
    else:
        kv = backend.run("unet_cond", _feeds(backend, "unet_cond", 2))
        feeds = _feeds(backend, "unet_input", 2, kv)
        benchmark(backend.run, "unet_input", feeds)
