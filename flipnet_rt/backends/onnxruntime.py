"""ONNX Runtime backend: the default, CPU everywhere; CUDA and TensorRT execution providers where installed.

:class:`OnnxRuntimeBackend` runs on the CPU with numpy arrays (no torch), through IO binding: each
network's outputs are numpy buffers allocated once per input shapes and written in place by every
later call with those shapes, so a restore loop allocates no output memory after its first step;
inputs are bound by address (``unet_input`` reads ``unet_cond``'s K/V buffers where they are: no
copy). Thread pools do not spin (``session.intra_op.allow_spinning = 0``): the five networks run
one after another, each session has its own pool, and a pool that spins after its network ran
takes the cores from the next network's pool. Measured on 2 shared cores (benchmarks/RESULTS.md),
no spinning makes every network faster than spinning per-session pools or one global pool;
``spinning=True`` brings spinning back (a dedicated machine running one network back to back).
:class:`OnnxRuntimeCudaBackend`
runs the same graphs with the CUDA (optionally TensorRT) execution provider and IO binding: inputs
and outputs are device arrays (CuPy, or torch CUDA tensors without CuPy: :mod:`.cuda`) bound by
address, so nothing makes a round trip through the host.
The CUDA class is NOT RUN in this project (no GPU, and onnxruntime-gpu cannot be installed beside
the CPU onnxruntime); it follows ONNX Runtime's documented ``io_binding()`` / ``bind_input`` /
``bind_output`` / ``run_with_iobinding`` API and is tested on a CPU only for what needs no GPU.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..engine.manifest import Manifest
from ..engine.spec import NetworkSpec, ShapeKey, infer_env, shape_key
from . import fixes, probes
from .base import Array, Backend, BackendUnavailable, HostArrays
from .cuda import DeviceStream, OnDevice

log = logging.getLogger(__name__)


class OnnxRuntimeBackend(HostArrays, Backend):
    """Sessions over an engine directory's ``*.onnx``, created on first use of each network.

    **Outputs are reused buffers**: per network and input shapes they are allocated once and
    overwritten by the next call of that network with those shapes (``array.copy()`` keeps one).
    Not safe for concurrent calls; :class:`~flipnet_rt.runtime.restorer.Restorer` serialises them.
    """

    name = "onnxruntime"

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
        low_memory: bool = False,
        spinning: bool = False,
    ) -> None:
        super().__init__({name: entry.spec for name, entry in manifest.networks.items()})
        self.directory = Path(directory)
        self.manifest = manifest
        self.providers = list(providers)
        self.threads = threads
        self.low_memory = low_memory
        self.spinning = spinning
        self._sessions: dict[str, object] = {}
        self._outputs: dict[ShapeKey, dict[str, Array]] = {}
        self._lock = threading.Lock()

    def session(self, network: str):
        with self._lock:
            if network not in self._sessions:
                import onnxruntime as ort

                options = self.session_options(ort)
                path = self.directory / self.manifest.networks[network].onnx
                providers = self._providers_for(network)
                self._sessions[network] = ort.InferenceSession(str(path), options, providers=providers)
                log.debug("loaded %s with %s", path, providers)
            return self._sessions[network]

    def session_options(self, ort) -> object:
        """``SessionOptions`` of every session: threads, spinning, memory (see the module docstring)."""
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if self.low_memory:  # no second, pre-packed copy of the weights; no memory arena
            options.add_session_config_entry("session.disable_prepacking", "1")
            options.enable_cpu_mem_arena = False
        return options

    def release(self, network: str) -> None:
        """Drop one network's session (and its weights) until it is used again: bounds peak memory
        when networks run one at a time (``flipnet-rt verify``). ``close`` releases everything."""
        with self._lock:
            self._sessions.pop(network, None)

    def close(self) -> None:
        """Drop every session and output buffer; a later call reopens what it needs."""
        with self._lock:
            self._sessions.clear()
            self._outputs.clear()

    @property
    def onnx_providers(self) -> tuple[str, ...]:
        """ONNX Runtime's CUDA provider where ``providers`` names it (with or without options), else ``()``."""
        names = [entry[0] if isinstance(entry, tuple) else entry for entry in self.providers]
        return tuple(name for name in names if name == CUDA_PROVIDER)

    def _providers_for(self, network: str) -> list:
        return self.providers

    def output_buffers(self, spec: NetworkSpec, feeds: Mapping[str, Array]) -> dict[str, Array]:
        """``spec``'s outputs for the shapes of ``feeds``: allocated on the first call with those shapes."""
        key = shape_key(spec, feeds)
        outputs = self._outputs.get(key)
        if outputs is None:
            env = infer_env(spec, dict(zip(spec.input_names, key[1])))
            outputs = self._outputs[key] = {t.name: self._empty(t.concrete(env), t.dtype) for t in spec.outputs}
        return outputs

    def _empty(self, shape: tuple[int, ...], dtype: str) -> Array:
        return np.empty(shape, dtype=dtype)

    def _run(self, spec: NetworkSpec, feeds: Mapping[str, Array]) -> dict[str, Array]:
        session = self.session(spec.name)
        outputs = self.output_buffers(spec, feeds)
        # Bound by address: an array already contiguous in the graph's dtype (every output of this
        # backend, so unet_cond's K/V for unet_input) is read where it is; others are converted once.
        inputs = {t.name: _host_array(feeds[t.name], t.dtype) for t in spec.inputs}  # kept alive for the run
        binding = session.io_binding()
        for name, array in inputs.items():
            binding.bind_input(name, "cpu", 0, array.dtype, array.shape, array.ctypes.data)
        for name, array in outputs.items():
            binding.bind_output(name, "cpu", 0, array.dtype, array.shape, array.ctypes.data)
        session.run_with_iobinding(binding)
        return dict(outputs)


def _host_array(array: Array, dtype: str) -> np.ndarray:
    """``array`` itself when it is a C-contiguous numpy array of ``dtype`` (no copy), else a converted copy."""
    if isinstance(array, np.ndarray) and array.dtype == dtype and array.flags.c_contiguous:
        return array
    return np.ascontiguousarray(array, dtype=dtype)


CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"


class OnnxRuntimeCudaBackend(OnDevice, OnnxRuntimeBackend):
    """The engine directory's graphs on ONNX Runtime's CUDA (optionally TensorRT) execution provider.

    Arrays are CuPy arrays (torch CUDA tensors where CuPy is not installed). ``run`` binds each
    input's device address and a preallocated output array per output with IO binding, and runs on
    the backend's one CUDA stream (given to ONNX Runtime as ``user_compute_stream``), so arrays never
    make a round trip through the host.

    **Outputs are reused buffers**: per network and input shapes the outputs are allocated once
    and overwritten by the next call of that network with those shapes (``.copy()`` / ``.clone()``
    keeps one). Construction checks that the provider is installed and touches no GPU; sessions are
    created on each network's first use.

    Args:
        directory, manifest: the engine directory and its manifest.
        device: CUDA device index.
        tensorrt_provider: put ONNX Runtime's TensorRT execution provider first (CUDA after it for
            what TensorRT cannot take). Cost: the first session of each network builds a TensorRT
            engine (minutes for sd21-base), cached in ``<directory>/ort-trt-cache`` and rebuilt
            when the GPU, TensorRT or the graph changes; its optimisation profile is the manifest's,
            its precision the graph's (an fp32 graph is not run in fp16). Native plans
            (``flipnet-rt build`` + the tensorrt backend) avoid that build at run time.

    The device arrays' library is chosen on first use: CuPy when installed, else torch
    (``FLIPNET_GPU_ARRAYS`` forces one; :mod:`flipnet_rt.backends.cuda`).
    """

    name = "onnxruntime-cuda"

    def __init__(
        self, directory: Path, manifest: Manifest, *, device: int = 0, tensorrt_provider: bool = False
    ) -> None:
        self.provider = TENSORRT_PROVIDER if tensorrt_provider else CUDA_PROVIDER
        available = probes.ort_providers()
        if self.provider not in available or CUDA_PROVIDER not in available:
            raise BackendUnavailable(
                fixes.ort_provider(
                    self.provider if self.provider not in available else CUDA_PROVIDER,
                    available,
                    probes.ort_distributions(),
                )
            )
        super().__init__(directory, manifest, providers=())
        self.device_index = int(device)
        self.device = f"cuda:{self.device_index}"
        self.cache_dir = self.directory / "ort-trt-cache"
        self._stream: DeviceStream | None = None
        self._run_options = None

    def run_options(self):
        """``RunOptions`` of every run: ONNX Runtime does not synchronise the device after a run
        (``disable_synchronize_execution_providers``). The work is ordered on the backend's stream and
        the host waits once per image batch, when it reads the images (``to_numpy``) or calls
        ``synchronize()``."""
        if self._run_options is None:
            import onnxruntime as ort

            self._run_options = ort.RunOptions()
            self._run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        return self._run_options

    def provider_options(self, network: str, stream_handle: int) -> list[tuple[str, dict[str, str]]]:
        """The ``providers`` argument of ``network``'s session: (name, options) pairs, best first."""
        cuda = (CUDA_PROVIDER, {"device_id": str(self.device_index), "user_compute_stream": str(stream_handle)})
        if self.provider == CUDA_PROVIDER:
            return [cuda]
        trt = {
            "device_id": str(self.device_index),
            "has_user_compute_stream": "1",
            "user_compute_stream": str(stream_handle),
            "trt_fp16_enable": "false",
            "trt_engine_cache_enable": "true",
            "trt_engine_cache_path": str(self.cache_dir),
            **trt_profile_options(self.manifest, network),
        }
        return [(TENSORRT_PROVIDER, trt), cuda]

    @property
    def onnx_providers(self) -> tuple[str, ...]:
        """``(CUDAExecutionProvider,)`` on the CUDA provider; ``()`` with ``tensorrt_provider`` (TensorRT
        engines for a detector's 12x12 to 48x48 networks cost more than they save: it stays on the CPU)."""
        return (CUDA_PROVIDER,) if self.provider == CUDA_PROVIDER else ()

    def _device_stream(self) -> DeviceStream:
        """The backend's one CUDA stream, created on first use."""
        if self._stream is None:
            self._stream = self.arrays.new_stream()
        return self._stream

    def _providers_for(self, network: str) -> list:
        return self.provider_options(network, self._device_stream().handle)

    def session(self, network: str):
        self._device_stream()
        fresh = network not in self._sessions
        session = super().session(network)
        if fresh and self.provider not in session.get_providers():  # ORT falls back to the CPU silently
            self._sessions.pop(network, None)
            raise RuntimeError(f"{network}: {fixes.cuda_libraries(self.provider, session.get_providers())}")
        return session

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def close(self) -> None:
        self.synchronize()
        super().close()

    def _run(self, spec: NetworkSpec, feeds: Mapping[str, Array]) -> dict[str, Array]:
        session = self.session(spec.name)
        outputs = self.output_buffers(spec, feeds)
        binding, arrays = session.io_binding(), self.arrays
        with self._device_stream():
            inputs = {t.name: arrays.as_input(feeds[t.name], t.dtype) for t in spec.inputs}  # kept alive to run
            for t in spec.inputs:
                x = inputs[t.name]
                binding.bind_input(
                    t.name, "cuda", self.device_index, np.dtype(t.dtype), tuple(x.shape), arrays.pointer(x)
                )
            for t in spec.outputs:
                y = outputs[t.name]
                binding.bind_output(
                    t.name, "cuda", self.device_index, np.dtype(t.dtype), tuple(y.shape), arrays.pointer(y)
                )
            session.run_with_iobinding(binding, self.run_options())
        return dict(outputs)

    def _empty(self, shape: tuple[int, ...], dtype: str) -> Array:
        return self.arrays.empty(shape, dtype)


def trt_profile_options(manifest: Manifest, network: str) -> dict[str, str]:
    """The TensorRT provider's explicit profile for one network, from the manifest.

    ``trt_profile_{min,opt,max}_shapes`` = ``"name:1x4x64x64,name2:..."`` over every dynamic
    input, so that ONNX Runtime builds one engine for the whole range instead of one per shape.
    """
    entry = manifest.networks[network]
    shapes = entry.spec.profile_shapes(entry.profile)
    return {
        f"trt_profile_{which}_shapes": ",".join(f"{name}:{'x'.join(map(str, s[i]))}" for name, s in shapes.items())
        for i, which in enumerate(("min", "opt", "max"))
    }
