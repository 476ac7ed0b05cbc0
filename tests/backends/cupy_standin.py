"""A STAND-IN for CuPy, for CPU tests only: host memory plays device memory.

:func:`standin_cupy` builds a module with the part of CuPy's surface that
``flipnet_rt.backends.cuda.CupyDeviceArrays`` / ``CupyStream`` use (``asarray``, ``asnumpy``,
``concatenate``, ``empty``, ``zeros``, ``stack``, ``flatnonzero``, ``copyto``, ``ascontiguousarray``,
``clip``, ``rint``, ``isnan``, the dtypes,
``ndarray`` with ``.data.ptr`` and ``.device.id``,
``cuda.Device``, ``cuda.Stream`` with ``ptr`` / ``record`` / ``wait_event`` / ``begin_capture`` /
``end_capture``, ``cuda.get_current_stream``, ``cuda.runtime.getDeviceProperties``), backed by
numpy. It checks the helpers' bookkeeping (shapes, dtype decisions, pointers, stream ordering
calls); it says nothing about CUDA itself, which only the GPU check shows
(tests/backends/test_cupy_gpu.py). It lives in the tests and nothing in ``flipnet_rt`` can reach it.
"""

from __future__ import annotations

import itertools
import types

import numpy as np


class ndarray(np.ndarray):  # noqa: N801 (CuPy's name)
    """numpy memory standing in for a device array; ``.data.ptr`` is its address, as CuPy's."""

    @property
    def data(self):  # type: ignore[override]
        return types.SimpleNamespace(ptr=self.ctypes.data)

    @property
    def device(self):  # every stand-in array is on "GPU" 0
        return types.SimpleNamespace(id=0)


def _wrap(array: np.ndarray) -> ndarray:
    return np.asarray(array).view(ndarray)


def standin_cupy(device_name: str = "Fake GPU", capability: tuple[int, int] = (9, 0)) -> types.ModuleType:
    """A fresh stand-in ``cupy`` module; ``module.log`` records device/stream calls in order."""
    cupy = types.ModuleType("cupy")
    cupy.__standin__ = True
    cupy.log = []
    cupy.ndarray = ndarray
    handles = itertools.count(0x1000, 0x10)

    def asarray(a, dtype=None):
        if isinstance(a, ndarray) and (dtype is None or a.dtype == np.dtype(dtype)):
            return a
        return _wrap(np.array(a, dtype=dtype, copy=True))  # host -> "device": a copy, as CuPy's

    cupy.asarray = asarray
    cupy.asnumpy = lambda a: np.array(np.asarray(a), copy=True)
    cupy.concatenate = lambda arrays, axis=0: _wrap(np.concatenate([np.asarray(a) for a in arrays], axis=axis))
    cupy.empty = lambda shape, dtype=float: _wrap(np.empty(shape, dtype))  # CuPy's default: float64
    cupy.zeros = lambda shape, dtype=float: _wrap(np.zeros(shape, dtype))
    cupy.stack = lambda arrays, axis=0: _wrap(np.stack([np.asarray(a) for a in arrays], axis=axis))
    cupy.flatnonzero = lambda a: _wrap(np.flatnonzero(np.asarray(a)))
    cupy.ascontiguousarray = lambda a, dtype=None: _wrap(np.ascontiguousarray(a, dtype))
    for name in ("clip", "rint", "isnan", "float32", "float16", "uint8"):  # elementwise: numpy's, same semantics
        setattr(cupy, name, getattr(np, name))

    def copyto(dst, src, casting="same_kind"):
        assert isinstance(src, ndarray), "CuPy copies from device arrays (or scalars) only"
        np.copyto(dst, src, casting=casting)

    cupy.copyto = copyto

    class Event:
        def __init__(self, stream) -> None:
            self.stream = stream

    class Graph:
        def __init__(self, stream) -> None:
            self.captured_on, self.launches = stream, []

        def launch(self, stream=None):
            self.launches.append(stream)
            cupy.log.append(("launch", stream.ptr))

    class Stream:
        current = []  # the stack `with stream:` pushes

        def __init__(self, null=False, non_blocking=False, ptds=False) -> None:
            self.ptr = 0 if null else next(handles)
            self.non_blocking, self.capturing = non_blocking, False

        def record(self, event=None):
            cupy.log.append(("record", self.ptr))
            return Event(self)

        def wait_event(self, event):
            cupy.log.append(("wait", self.ptr, event.stream.ptr))

        def synchronize(self):
            assert not self.capturing, "a capturing stream cannot be synchronized"
            cupy.log.append(("synchronize", self.ptr))

        def __enter__(self):
            Stream.current.append(self)
            return self

        def __exit__(self, *exc):
            Stream.current.pop()

        def begin_capture(self, mode=None):
            assert not self.capturing and self.ptr != 0
            self.capturing = True
            cupy.log.append(("begin_capture", self.ptr))

        def end_capture(self):
            assert self.capturing
            self.capturing = False
            cupy.log.append(("end_capture", self.ptr))
            return Graph(self)

    null = Stream(null=True)

    class Device:
        def __init__(self, index=0) -> None:
            self.id = index

        def __enter__(self):
            cupy.log.append(("device", self.id))
            return self

        def __exit__(self, *exc):
            pass

    def getDeviceProperties(index):  # noqa: N802 (CUDA's name)
        return {"name": device_name.encode(), "major": capability[0], "minor": capability[1]}

    runtime = types.SimpleNamespace(
        getDeviceProperties=getDeviceProperties, getDeviceCount=lambda: 1, CUDARuntimeError=RuntimeError
    )
    cupy.cuda = types.SimpleNamespace(
        Device=Device,
        Stream=Stream,
        Event=Event,
        Graph=Graph,
        runtime=runtime,
        get_current_stream=lambda: Stream.current[-1] if Stream.current else null,
    )
    return cupy
