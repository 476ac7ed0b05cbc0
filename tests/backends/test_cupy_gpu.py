"""The GPU backends' CuPy arrays on a real GPU (issue 17): the GPU check runs these (-m gpu).

- the array helpers and the sampler's arithmetic (operators only) on real CuPy arrays, against numpy;
- :class:`~flipnet_rt.backends.cuda.CupyStream`: event ordering and CUDA-graph capture/replay of a
  CuPy kernel at fixed addresses;
- the TensorRT backend with ``arrays="cupy"`` (and ``"torch"``) over the test double of TensorRT in
  test_tensorrt_double_gpu.py (torch networks run at the bound addresses on the backend's stream),
  shapes A, B, A, enqueue and CUDA graphs, against eager torch.
Skips here with the reason (no CuPy, no GPU).
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
from helpers import cupy_on_a_gpu

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    return cupy_on_a_gpu()


def test_cupy_arrays_and_the_sampler_match_numpy(cp):
    from flipnet_rt.backends.cuda import CupyDeviceArrays
    from flipnet_rt.sampling.samplers import parameterized, sample
    from flipnet_rt.sampling.schedule import SamplerKind, ScheduleConfig, Spacing, make_grid

    arrays = CupyDeviceArrays("cuda:0")
    x = arrays.from_numpy(np.random.default_rng(0).standard_normal((2, 4, 8, 8)))
    assert isinstance(x, cp.ndarray) and x.dtype == np.float32
    half = arrays.empty((2, 4, 8, 8), "float16")
    arrays.copy_into(half, x)
    assert arrays.pointer(half) == half.data.ptr and arrays.nbytes(half) == half.size * 2

    schedule = ScheduleConfig()
    ac = schedule.alphas_cumprod()
    for kind in SamplerKind:
        grid = make_grid(schedule, kind, 4, Spacing("trailing"))

        def model(a, t, lib):  # an fp16 network output mixed into float32 arithmetic, as the engines do
            return (a * 0.5 + t / 1000.0).astype(lib.float16)

        got = sample(kind, parameterized(lambda a, t: model(a, t, cp), ac, schedule.prediction_type), x, grid)
        want = sample(
            kind, parameterized(lambda a, t: model(a, t, np), ac, schedule.prediction_type), arrays.to_numpy(x), grid
        )
        err = float(np.abs(arrays.to_numpy(got) - want).max())
        print(f"sampler {kind.value} on CuPy vs numpy: dtype {got.dtype}, max error {err:.2e}")
        assert isinstance(got, cp.ndarray) and got.dtype == np.float32 and err < 1e-4  # float32 round-off


def test_cupy_stream_graph_replays_at_fixed_addresses(cp):
    from flipnet_rt.backends.cuda import CupyDeviceArrays

    arrays = CupyDeviceArrays("cuda:0")
    stream = arrays.new_stream()
    a, out = arrays.from_numpy(np.arange(1024, dtype=np.float32)), arrays.empty((1024,), "float32")
    with stream:
        cp.multiply(a, 2.0, out=out)  # warm-up: the kernel is compiled before capture
        graph = stream.capture(lambda: cp.multiply(a, 2.0, out=out))
    arrays.copy_into(a, np.full(1024, 3.0, np.float32))
    with stream:
        graph.replay()
    assert np.all(arrays.to_numpy(out) == 6.0)  # the replay read a's new values at a's address


@pytest.mark.parametrize("library", ["cupy", "torch"])
@pytest.mark.parametrize("cuda_graph", [False, True], ids=["enqueue", "graph"])
def test_tensorrt_backend_on_cupy_or_torch_arrays_matches_eager(
    cp, tiny_model, tmp_path, monkeypatch, library, cuda_graph
):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA GPU (the TensorRT double runs torch networks)")
    from backends.test_tensorrt_double_gpu import _engine_dir, torch_tensorrt_double

    from flipnet_rt.backends.tensorrt import TensorRTBackend
    from flipnet_rt.backends.torch import TorchBackend
    from flipnet_rt.config.options import Mode, SamplingOptions
    from flipnet_rt.engine.spec import KVSpec, network_specs
    from flipnet_rt.models import PROMPT_KINDS
    from flipnet_rt.models.networks import kv_layout
    from flipnet_rt.runtime.core import DiffusionCore

    model = copy.deepcopy(tiny_model).to("cuda").eval().requires_grad_(False)
    kv = [KVSpec(layer.level, layer.channels) for layer in kv_layout(model)]
    trt = torch_tensorrt_double(model, network_specs(model.config, kv))
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    manifest = _engine_dir(tmp_path, model, kv)
    prompts = {k: model.prompt(k).float().cpu().numpy() for k in PROMPT_KINDS}
    backend = TensorRTBackend(tmp_path, manifest, cuda_graph=cuda_graph, arrays=library)
    assert backend.arrays.library == library
    core, eager = (
        DiffusionCore(backend, model.config, prompts),
        DiffusionCore(TorchBackend(model, device="cuda"), model.config, prompts),
    )
    options = SamplingOptions.from_config(model.config, steps=4)
    r, rng = model.config.resolution, np.random.default_rng(0)
    for label, batch, seeds in (("A", 2, [1, 2]), ("B", 1, [3]), ("A again", 2, [4, 5])):
        pixels = rng.uniform(-1, 1, (batch, 3, r, r)).astype(np.float32)
        got, want = (
            core.latents(pixels, Mode.RESTORE, options, seeds),
            eager.latents(pixels, Mode.RESTORE, options, seeds),
        )
        rel = float(np.linalg.norm(got - want) / np.linalg.norm(want))
        print(
            f"TensorRT backend on {library} arrays (graphs {'on' if cuda_graph else 'off'}), shape {label}: "
            f"relative L2 {rel:.2e}, NaN {int(np.isnan(got).sum())}"
        )
        # the same torch kernels on the same GPU: beyond float noise means wrong bindings or stream order
        assert not np.isnan(got).any() and rel < 1e-5
    backend.close()
