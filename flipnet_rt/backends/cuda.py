"""CUDA device arrays and streams shared by the GPU backends (TensorRT, ONNX Runtime CUDA).

Device memory is **CuPy arrays** when CuPy imports (``pip install 'flipnet-rt[gpu]'``: no PyTorch
needed), else **torch CUDA tensors**; a backend chooses once, on first use (:func:`device_arrays`;
``FLIPNET_GPU_ARRAYS=cupy|torch`` or the backends' ``arrays=`` argument forces one). Everything
that differs between the two libraries lives in the two :class:`DeviceArrays` classes and the two
:class:`DeviceStream` classes below (allocation, raw pointers, casting copies, streams and their
ordering, CUDA-graph capture), so the backends' code does not branch per call. Neither library is
imported at import time, so importing this module costs nothing on a CPU-only install.

Dtypes: floating host arrays become float32 device arrays unless a dtype is given, so the
sampler's arithmetic (operators only: ``a * x + b * y``, slicing) stays float32 on either
library; each network's feeds are cast to its spec's dtype when copied into its buffers.
"""

from __future__ import annotations

import importlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import fixes, probes
from .base import ArrayKind, BackendUnavailable

log = logging.getLogger(__name__)

LIBRARIES = ("cupy", "torch")
ENV = "FLIPNET_GPU_ARRAYS"


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)  # "float32", "float16", "bfloat16", "int32", "int64", "bool", "uint8"


# ---------------------------------------------------------------------------------------- streams
class DeviceStream(ABC):
    """The backend's one CUDA stream. Entering it orders it after the library's current stream and
    makes it current; leaving orders the current stream after it (events, no host synchronisation),
    so arrays flow between the sampler (current stream) and the networks (this stream)."""

    stream: Any

    @property
    @abstractmethod
    def handle(self) -> int:
        """The ``cudaStream_t`` as an int, for ``execute_async_v3`` and ONNX Runtime."""

    @abstractmethod
    def __enter__(self) -> DeviceStream: ...

    @abstractmethod
    def __exit__(self, *exc: object) -> None: ...

    def synchronize(self) -> None:
        self.stream.synchronize()

    @abstractmethod
    def capture(self, enqueue: Callable[[], None]) -> Any:
        """Capture what ``enqueue()`` puts on this stream as a CUDA graph (call inside ``with self``);
        the result's ``replay()`` launches it on this stream."""


class TorchStream(DeviceStream):
    """``torch.cuda.Stream``; graphs are ``torch.cuda.CUDAGraph``."""

    def __init__(self, device: str) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device)
        self._context: Any = None

    @property
    def handle(self) -> int:
        return int(self.stream.cuda_stream)

    def __enter__(self) -> TorchStream:
        torch = self._torch
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        self._context = torch.cuda.stream(self.stream)
        self._context.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(*exc)
        self._torch.cuda.current_stream(self.device).wait_stream(self.stream)

    def capture(self, enqueue: Callable[[], None]) -> Any:
        graph = self._torch.cuda.CUDAGraph()
        with self._torch.cuda.graph(graph, stream=self.stream):
            enqueue()
        return graph


class _CupyGraph:
    """A captured ``cupy.cuda.Graph`` and the stream it replays on."""

    def __init__(self, graph: Any, stream: Any) -> None:
        self.graph, self.stream = graph, stream

    def replay(self) -> None:
        self.graph.launch(stream=self.stream)


class CupyStream(DeviceStream):
    """``cupy.cuda.Stream(non_blocking=True)`` on one device; ordered with CuPy's current stream by
    events; graphs by ``Stream.begin_capture`` / ``end_capture`` (relaxed mode, CuPy's default) and
    ``Graph.launch(stream)``."""

    def __init__(self, device_index: int) -> None:
        import cupy

        self._cupy = cupy
        self.device_index = device_index
        with cupy.cuda.Device(device_index):
            self.stream = cupy.cuda.Stream(non_blocking=True)
        self._device: Any = None

    @property
    def handle(self) -> int:
        return int(self.stream.ptr)

    def __enter__(self) -> CupyStream:
        cupy = self._cupy
        self._device = cupy.cuda.Device(self.device_index)
        self._device.__enter__()
        self.stream.wait_event(cupy.cuda.get_current_stream().record())
        self.stream.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.__exit__(*exc)
        self._cupy.cuda.get_current_stream().wait_event(self.stream.record())
        self._device.__exit__(*exc)

    def capture(self, enqueue: Callable[[], None]) -> Any:
        self.stream.begin_capture()
        try:
            enqueue()
        except BaseException:
            try:
                self.stream.end_capture()  # leave the stream usable; the graph is dropped
            except Exception:  # an invalidated capture says so here too
                pass
            raise
        return _CupyGraph(self.stream.end_capture(), self.stream)


# ---------------------------------------------------------------------------------------- arrays
class DeviceArrays(ABC):
    """Array helpers over one CUDA device's arrays: the restore loop's (``from_numpy``, ``to_numpy``,
    ``concat``, ``repeat``, ``full``) and the GPU backends' (buffers, pointers, casting copies,
    streams, the GPU's identity)."""

    library: str

    def __init__(self, device: str = "cuda:0") -> None:
        self.device = device  # "cuda:N" ("cpu": torch only, for stand-in tests of buffer bookkeeping)

    @property
    def device_index(self) -> int:
        return int(self.device.partition(":")[2] or 0)

    # the restore loop's helpers
    @abstractmethod
    def from_numpy(self, array: np.ndarray, dtype: str | None = None) -> Any:
        """Host array -> device array; floating arrays in ``dtype`` (default float32), others as they are."""

    @abstractmethod
    def to_numpy(self, array: Any) -> np.ndarray:
        """Device array -> host array; float16/bfloat16 come back as float32."""

    @abstractmethod
    def concat(self, arrays: Sequence[Any], axis: int = 0) -> Any: ...

    def repeat(self, array: Any, times: int) -> Any:
        return array if times == 1 else self.concat([array] * times)

    def full(self, n: int, value: float, dtype: str = "float32") -> Any:
        return self.from_numpy(np.full((n,), value, dtype=dtype), dtype)

    # the backends' helpers
    @abstractmethod
    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        """An uninitialised device array; ``dtype`` a spec's numpy name."""

    @abstractmethod
    def pointer(self, array: Any) -> int:
        """The device address of ``array``'s first element."""

    @abstractmethod
    def nbytes(self, array: Any) -> int: ...

    @abstractmethod
    def has_dtype(self, array: Any, dtype: str) -> bool: ...

    @abstractmethod
    def copy_into(self, buffer: Any, array: Any) -> None:
        """``buffer[...] = array`` on the current stream, cast to ``buffer``'s dtype."""

    @abstractmethod
    def as_input(self, array: Any, dtype: str) -> Any:
        """A C-contiguous device array of ``dtype`` (``array`` itself when it already is one)."""

    @abstractmethod
    def new_stream(self) -> DeviceStream: ...

    @abstractmethod
    def gpu_identity(self) -> tuple[str, str]:
        """(name, "major.minor") of the device, as cudaDeviceProp has them (what `flipnet-rt build` records)."""


class TorchDeviceArrays(DeviceArrays):
    """torch tensors on one CUDA device (any torch device works: the CPU tests use "cpu")."""

    library = "torch"

    def from_numpy(self, array: np.ndarray, dtype: str | None = None) -> Any:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if array.dtype.kind == "f":
            tensor = tensor.to(torch_dtype(dtype or "float32"))
        return tensor.to(self.device)

    def to_numpy(self, array: Any) -> np.ndarray:
        array = array.detach()
        if array.is_floating_point() and array.dtype.itemsize < 4:  # float16/bfloat16 -> float32
            array = array.float()
        return array.cpu().numpy()

    def concat(self, arrays: Sequence[Any], axis: int = 0) -> Any:
        import torch

        return torch.cat(list(arrays), dim=axis)

    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        import torch

        return torch.empty(shape, dtype=torch_dtype(dtype), device=self.device)

    def pointer(self, array: Any) -> int:
        return int(array.data_ptr())

    def nbytes(self, array: Any) -> int:
        return int(array.numel() * array.element_size())

    def has_dtype(self, array: Any, dtype: str) -> bool:
        return array.dtype == torch_dtype(dtype)

    def copy_into(self, buffer: Any, array: Any) -> None:
        buffer.copy_(array if not isinstance(array, np.ndarray) else self.from_numpy(array))

    def as_input(self, array: Any, dtype: str) -> Any:
        import torch

        tensor = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(array))
        return tensor.to(device=self.device, dtype=torch_dtype(dtype)).contiguous()

    def new_stream(self) -> DeviceStream:
        return TorchStream(self.device)

    def gpu_identity(self) -> tuple[str, str]:
        import torch

        props = torch.cuda.get_device_properties(self.device_index)
        return props.name, f"{props.major}.{props.minor}"


class CupyDeviceArrays(DeviceArrays):
    """CuPy arrays on one CUDA device. CuPy has no bfloat16: a bf16 engine needs torch arrays."""

    library = "cupy"

    def __init__(self, device: str = "cuda:0") -> None:
        super().__init__(device)
        import cupy

        self._cupy = cupy

    def _device(self) -> Any:
        return self._cupy.cuda.Device(self.device_index)

    @staticmethod
    def _dtype(dtype: str) -> np.dtype:
        if dtype == "bfloat16":
            raise ValueError(
                "CuPy has no bfloat16: export the engine in fp16 or fp32, or use torch's arrays "
                f"({ENV}=torch, with pip install 'flipnet-rt[torch]')"
            )
        return np.dtype(dtype)

    def from_numpy(self, array: np.ndarray, dtype: str | None = None) -> Any:
        host = np.asarray(array)
        if host.dtype.kind == "f":  # cast on the host: a float16 feed crosses the bus at half the bytes
            host = host.astype(self._dtype(dtype or "float32"), copy=False)
        with self._device():
            return self._cupy.asarray(np.ascontiguousarray(host))

    def to_numpy(self, array: Any) -> np.ndarray:
        host = self._cupy.asnumpy(array)
        return host.astype(np.float32) if host.dtype.kind == "f" and host.dtype.itemsize < 4 else host

    def concat(self, arrays: Sequence[Any], axis: int = 0) -> Any:
        with self._device():
            return self._cupy.concatenate(list(arrays), axis=axis)

    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        with self._device():
            return self._cupy.empty(tuple(shape), dtype=self._dtype(dtype))

    def pointer(self, array: Any) -> int:
        return int(array.data.ptr)

    def nbytes(self, array: Any) -> int:
        return int(array.nbytes)

    def has_dtype(self, array: Any, dtype: str) -> bool:
        return dtype != "bfloat16" and array.dtype == np.dtype(dtype)

    def copy_into(self, buffer: Any, array: Any) -> None:
        cupy = self._cupy
        source = array if isinstance(array, cupy.ndarray) else self.from_numpy(np.asarray(array))
        with self._device():
            cupy.copyto(buffer, source, casting="unsafe")

    def as_input(self, array: Any, dtype: str) -> Any:
        cupy, wanted = self._cupy, self._dtype(dtype)
        if not isinstance(array, cupy.ndarray):
            array = self.from_numpy(np.asarray(array), dtype if np.asarray(array).dtype.kind == "f" else None)
        with self._device():
            return cupy.ascontiguousarray(array.astype(wanted, copy=False))

    def new_stream(self) -> DeviceStream:
        return CupyStream(self.device_index)

    def gpu_identity(self) -> tuple[str, str]:
        props = self._cupy.cuda.runtime.getDeviceProperties(self.device_index)
        name = props["name"]
        return (name.decode() if isinstance(name, bytes) else str(name)), f"{props['major']}.{props['minor']}"


_CLASSES = {"cupy": CupyDeviceArrays, "torch": TorchDeviceArrays}


def device_arrays(device: str, library: str = "auto") -> DeviceArrays:
    """The array helpers of a GPU backend on ``device`` ("cuda:N").

    ``library``: "cupy", "torch" or "auto" (``$FLIPNET_GPU_ARRAYS`` if set, else CuPy when it imports,
    else torch). A device other than CUDA takes torch (only torch holds arrays there).
    Raises BackendUnavailable naming ``pip install 'flipnet-rt[gpu]'`` when neither is installed.
    """
    wanted = (os.environ.get(ENV, "auto") if library == "auto" else library).strip().lower() or "auto"
    if wanted not in ("auto", *LIBRARIES):
        raise ValueError(
            f"GPU arrays: {wanted!r} is not a library; use one of auto, {', '.join(LIBRARIES)} "
            f"(the arrays= argument or ${ENV})"
        )
    if not device.startswith("cuda"):
        wanted = "torch"
    candidates = LIBRARIES if wanted == "auto" else (wanted,)
    reasons = []
    for name in candidates:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            reasons.append(f"{name}: {exc}")
            continue
        if wanted == "auto" and name != candidates[0]:
            log.info("GPU arrays: %s (%s)", name, "; ".join(reasons))
        return _CLASSES[name](device)
    raise BackendUnavailable(fixes.no_gpu_arrays(wanted, probes.cupy_installed() or probes.torch_installed()))


class OnDevice:
    """Mixin for a GPU backend: the restore loop's array helpers, on one :class:`DeviceArrays`
    chosen on first use for ``self.device`` and ``self.array_library`` (and re-chosen if the
    device changes)."""

    device: str
    array_library: str = "auto"
    _arrays: DeviceArrays | None = None

    @property
    def arrays(self) -> DeviceArrays:
        if self._arrays is None or self._arrays.device != self.device:
            self._arrays = device_arrays(self.device, self.array_library)
            log.debug("%s: device arrays are %s", type(self).__name__, self._arrays.library)
        return self._arrays

    @property
    def array_kind(self) -> ArrayKind:
        """The chosen library's arrays on ``self.device`` (choosing the library if not done yet)."""
        return ArrayKind(self.arrays.library, self.device)

    def from_numpy(self, array: np.ndarray, dtype: str | None = None) -> Any:
        return self.arrays.from_numpy(array, dtype)

    def to_numpy(self, array: Any) -> np.ndarray:
        return self.arrays.to_numpy(array)

    def concat(self, arrays: Sequence[Any], axis: int = 0) -> Any:
        return self.arrays.concat(arrays, axis)

    def repeat(self, array: Any, times: int) -> Any:
        return self.arrays.repeat(array, times)

    def full(self, n: int, value: float, dtype: str = "float32") -> Any:
        return self.arrays.full(n, value, dtype)
