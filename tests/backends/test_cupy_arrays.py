"""The GPU backends' device arrays on CuPy (issue 17), on a CPU.

Two kinds of test:
- in subprocesses, with the real CuPy when it imports here (``pip install cupy-cuda12x``: it imports
  on a machine without a GPU, but cannot allocate) or else the stand-in: importing and constructing
  the GPU backends chooses CuPy's arrays and imports no torch; with neither CuPy nor torch the
  registry names ``pip install 'flipnet-rt[gpu]'``.
- in process, against the STAND-IN CuPy of ``cupy_standin.py`` (numpy memory playing device memory):
  the array helpers' dtype decisions, shapes, pointers, stream ordering calls, and the TensorRT
  backend's buffers over the stand-in TensorRT with CuPy-kind arrays. What CUDA does with them is
  the GPU check's (tests/backends/test_cupy_gpu.py).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from backends.cupy_standin import standin_cupy

from flipnet_rt.backends import cuda as cuda_arrays
from flipnet_rt.backends.base import BackendUnavailable

HERE = Path(__file__).resolve().parent

# In a subprocess: the real CuPy if it imports, else the stand-in (named in the output).
_CUPY = textwrap.dedent(f"""
    import sys
    try:
        import cupy
        which = "cupy " + cupy.__version__
    except ImportError:
        sys.path.insert(0, {str(HERE)!r})
        from cupy_standin import standin_cupy
        sys.modules["cupy"] = standin_cupy()
        which = "stand-in cupy"
""")


def _run(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", _CUPY + textwrap.dedent(code)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    print(done.stdout)
    return done.stdout.split("\n")


@pytest.fixture
def cupy(monkeypatch):
    module = standin_cupy()
    monkeypatch.setitem(sys.modules, "cupy", module)
    monkeypatch.delenv(cuda_arrays.ENV, raising=False)
    return module


# ------------------------------------------------------------------ no torch on the GPU import path
def test_gpu_backends_import_and_construct_without_torch(tmp_path):
    """Installed torch is not imported: the backends' modules, their construction and their arrays'
    choice (CuPy) touch neither torch nor a GPU."""
    out = _run(f"""
        from pathlib import Path
        from flipnet_rt.backends import probes
        probes.ort_providers = lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
        from flipnet_rt.backends.tensorrt import TensorRTBackend
        from flipnet_rt.backends.onnxruntime import OnnxRuntimeCudaBackend
        from flipnet_rt.backends import registry, select  # noqa: F401
        from flipnet_rt.engine.manifest import Manifest, NetworkEntry, TensorRTInfo
        from flipnet_rt.engine.spec import KVSpec, Profile, network_specs
        from flipnet_rt.config.presets import tiny
        specs = network_specs(tiny(), [KVSpec(0, 32)])
        profile = Profile(B=(1, 2, 4), h=(8, 8, 16), w=(8, 8, 16))
        info = TensorRTInfo(version="10.0", gpu="Fake GPU", compute_capability="9.0", precision="fp32",
                            plans={{n: n + ".plan" for n in specs}}, profiles={{}})
        manifest = Manifest(model_name="tiny", config_sha256=tiny().digest(), precision="fp32", opset=18,
                            resolution=64,
                            networks={{n: NetworkEntry(s, profile, n + ".onnx", "") for n, s in specs.items()}},
                            versions={{}}, tensorrt=info)
        trt = TensorRTBackend(Path({str(tmp_path)!r}), manifest)
        ort = OnnxRuntimeCudaBackend(Path({str(tmp_path)!r}), manifest)
        print(which)
        print("arrays", trt.arrays.library, ort.arrays.library)
        print("torch imported:", "torch" in sys.modules)
    """)
    assert "arrays cupy cupy" in out and "torch imported: False" in out


def test_choosing_a_gpu_backend_without_torch_names_the_gpu_extra(tmp_path):
    """On a machine without torch (hidden here): the GPU candidates are judged through CuPy (no GPU
    here: it says so, naming CuPy); with neither CuPy nor torch, the fix is the `gpu` extra."""
    out = _run("""
        sys.modules["torch"] = None  # this 'machine' has no torch
        from flipnet_rt.backends import probes, registry
        from flipnet_rt.backends.registry import BackendOptions, OnnxRuntimeCudaType, TensorRTType
        print("gpu arrays:", probes.gpu_arrays_installed(), "cuda visible:", probes.cuda_visible())
        print("reason:", registry._needs_gpu_arrays(TensorRTType()))
        sys.modules["cupy"] = None  # and no CuPy either
        print("without:", registry._needs_gpu_arrays(OnnxRuntimeCudaType()))
        from flipnet_rt.backends.cuda import device_arrays
        try:
            device_arrays("cuda:0")
        except Exception as exc:
            print("arrays:", type(exc).__name__, exc)
    """)
    assert "reason: None" in out
    without = next(line for line in out if line.startswith("without:"))
    assert "onnxruntime-cuda: the GPU backends keep device arrays in CuPy or PyTorch" in without
    assert "pip install 'flipnet-rt[gpu]'" in without
    assert any(line.startswith("arrays: BackendUnavailable") and "flipnet-rt[gpu]" in line for line in out)


# ------------------------------------------------------------------ the choice of library
def test_device_arrays_choose_cupy_then_torch(cupy, monkeypatch):
    assert isinstance(cuda_arrays.device_arrays("cuda:1"), cuda_arrays.CupyDeviceArrays)
    assert cuda_arrays.device_arrays("cuda:1").device_index == 1
    assert isinstance(cuda_arrays.device_arrays("cuda:0", "torch"), cuda_arrays.TorchDeviceArrays)
    assert isinstance(cuda_arrays.device_arrays("cpu", "cupy"), cuda_arrays.TorchDeviceArrays)  # torch only there
    monkeypatch.setenv(cuda_arrays.ENV, "torch")
    assert cuda_arrays.device_arrays("cuda:0").library == "torch"
    monkeypatch.setenv(cuda_arrays.ENV, "numpy")
    with pytest.raises(ValueError, match="'numpy' is not a library; use one of auto, cupy, torch"):
        cuda_arrays.device_arrays("cuda:0")
    monkeypatch.delenv(cuda_arrays.ENV)
    monkeypatch.setitem(sys.modules, "cupy", None)  # not installed: torch
    assert cuda_arrays.device_arrays("cuda:0").library == "torch"
    with pytest.raises(BackendUnavailable, match=r"FLIPNET_GPU_ARRAYS=cupy.*pip install 'flipnet-rt\[gpu\]'"):
        cuda_arrays.device_arrays("cuda:0", "cupy")


# ------------------------------------------------------------------ the helpers against the stand-in
def test_cupy_arrays_keep_the_sampler_in_float32_and_cast_feeds(cupy):
    arrays = cuda_arrays.CupyDeviceArrays("cuda:0")
    x = arrays.from_numpy(np.ones((2, 3), np.float64))
    assert isinstance(x, cupy.ndarray) and x.dtype == np.float32 and x.shape == (2, 3)
    assert arrays.from_numpy(np.ones(1, np.float32), "float16").dtype == np.float16
    assert arrays.from_numpy(np.arange(3)).dtype == np.int64  # integers as they are
    assert arrays.to_numpy(arrays.from_numpy(np.ones(2), "float16")).dtype == np.float32
    assert type(arrays.to_numpy(x)) is np.ndarray
    assert arrays.concat([x, x], axis=1).shape == (2, 6) and arrays.repeat(x, 3).shape == (6, 3)
    assert arrays.repeat(x, 1) is x
    t = arrays.full(4, 981.0)
    assert t.dtype == np.float32 and t.shape == (4,) and float(t[0]) == 981.0
    with pytest.raises(ValueError, match="CuPy has no bfloat16: export the engine in fp16 or fp32"):
        arrays.empty((2,), "bfloat16")
    assert not arrays.has_dtype(x, "bfloat16") and arrays.has_dtype(x, "float32")


def test_cupy_buffers_pointers_and_casting_copies(cupy):
    arrays = cuda_arrays.CupyDeviceArrays("cuda:0")
    buffer = arrays.empty((2, 4), "float16")
    assert arrays.pointer(buffer) == buffer.ctypes.data and arrays.nbytes(buffer) == 16
    source = arrays.from_numpy(np.arange(8, dtype=np.float32).reshape(2, 4) / 3)
    arrays.copy_into(buffer, source)  # float32 -> the buffer's float16
    assert buffer.dtype == np.float16 and np.allclose(np.asarray(buffer), np.asarray(source), atol=1e-3)
    arrays.copy_into(buffer, np.ones((2, 4)))  # a host array is uploaded first
    assert np.all(np.asarray(buffer) == 1)
    same = arrays.as_input(source, "float32")
    assert arrays.pointer(same) == arrays.pointer(source)  # already right: bound where it is
    cast = arrays.as_input(source, "float16")
    assert cast.dtype == np.float16 and arrays.pointer(cast) != arrays.pointer(source)
    strided = arrays.as_input(source[:, ::2], "float32")
    assert strided.flags.c_contiguous and strided.shape == (2, 2)
    host = arrays.as_input(np.arange(3), "int64")
    assert isinstance(host, cupy.ndarray) and host.dtype == np.int64
    assert arrays.gpu_identity() == ("Fake GPU", "9.0")


def test_cupy_stream_orders_with_the_current_stream_by_events_and_captures(cupy):
    stream = cuda_arrays.CupyDeviceArrays("cuda:0").new_stream()
    assert stream.handle == stream.stream.ptr and stream.stream.non_blocking
    cupy.log.clear()
    with stream:
        assert cupy.cuda.get_current_stream() is stream.stream
        graph = stream.capture(lambda: cupy.log.append(("enqueue",)))
    assert cupy.cuda.get_current_stream().ptr == 0
    s = stream.handle
    assert cupy.log == [
        ("device", 0),
        ("record", 0),
        ("wait", s, 0),
        ("begin_capture", s),
        ("enqueue",),
        ("end_capture", s),
        ("record", s),
        ("wait", 0, s),
    ]
    graph.replay()
    assert cupy.log[-1] == ("launch", s)
    with pytest.raises(ZeroDivisionError), stream:  # a failed enqueue ends the capture, stream usable
        stream.capture(lambda: 1 / 0)
    assert not stream.stream.capturing


def test_tensorrt_backend_on_cupy_arrays_binds_addresses_and_kv_without_copies(cupy, tmp_path, monkeypatch):
    """Shapes A, B, A over the stand-in TensorRT with CuPy-kind arrays: buffers, addresses, the shared
    scratch buffer, casting copies into inputs, and unet_cond's K/V bound where they are."""
    from backends.test_gpu_backends import _expected, fake_tensorrt, tiny_manifest

    from flipnet_rt.backends.tensorrt import TensorRTBackend

    trt = fake_tensorrt("10.9.fake", user_managed=True)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    backend = TensorRTBackend(tmp_path, tiny_manifest(tmp_path, trt_version="10.9.fake"), arrays="cupy")
    assert backend.arrays.library == "cupy"  # GPU identity from CuPy's device properties below
    rng = np.random.default_rng(0)

    def feeds(network, batch, size=8):
        spec = backend.specs[network]
        env = {"B": batch, "h": size, "w": size}
        return {t.name: backend.from_numpy(rng.standard_normal(t.concrete(env))) for t in spec.inputs}

    cond = feeds("unet_cond", 2)
    kv = backend.run("unet_cond", cond)
    assert all(isinstance(v, cupy.ndarray) for v in kv.values())
    base = {k: v for k, v in feeds("unet_input", 2).items() if k not in kv}
    a = backend.run("unet_input", {**base, **kv})
    b = backend.run("unet_input", feeds("unet_input", 1, 16))
    again = backend.run("unet_input", {**base, **kv})
    assert again["noise_pred"] is a["noise_pred"] and b["noise_pred"].shape == (1, 4, 16, 16)
    expected = _expected({**{k: np.asarray(v) for k, v in base.items()}, **{k: np.asarray(v) for k, v in kv.items()}})
    assert np.allclose(np.asarray(again["noise_pred"]), expected, rtol=1e-5)
    engine = next(e for e in trt.engines if e.spec.name == "unet_input")
    context_a = engine.contexts[0]
    for name, array in kv.items():
        assert context_a.addresses[name] == array.data.ptr, name  # bound where unet_cond wrote it
    assert context_a.addresses["noise_pred"] == a["noise_pred"].data.ptr
    scratch = backend._plans["unet_input"].scratch
    assert isinstance(scratch, cupy.ndarray) and scratch.dtype == np.uint8
    assert {c.device_memory for c in engine.contexts} == {(scratch.data.ptr, 4096)}
    assert any(entry[0] == "wait" for entry in cupy.log)  # ran inside the backend's ordered stream
