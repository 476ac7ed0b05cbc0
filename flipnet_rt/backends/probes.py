"""What is installed and visible here, asked without importing what the answer does not need.

Module functions, so that tests can monkeypatch what "installed" and "visible" mean.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

#: Distributions that all install the one ``onnxruntime`` package directory.
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")


def installed(name: str) -> bool:
    """Whether ``import name`` can work, without importing it: an already imported module counts (even
    one without ``__spec__``), a ``None`` in ``sys.modules`` (an import blocked on purpose) does not."""
    if name in sys.modules:
        return sys.modules[name] is not None
    return importlib.util.find_spec(name) is not None


def tensorrt_installed() -> bool:
    return installed("tensorrt")


def torch_installed() -> bool:
    return installed("torch")


def cupy_installed() -> bool:
    return installed("cupy")


def gpu_arrays_installed() -> bool:
    """A library for the GPU backends' device arrays: CuPy (``flipnet-rt[gpu]``) or torch."""
    return cupy_installed() or torch_installed()


def cuda_visible() -> bool:
    """A CUDA GPU visible to torch, or else to CuPy (imports whichever is installed; only asked
    when a GPU candidate needs it). Torch first: the torch backend runs where torch sees a GPU.
    (A CPU-only torch beside CuPy on a GPU machine answers yes through CuPy; the torch backend
    then fails at its first call with torch's own message.)"""
    if torch_installed():
        import torch

        if torch.cuda.is_available():
            return True
    if cupy_installed():
        try:
            import cupy

            return cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:  # CUDARuntimeError: no driver, no device; ImportError: a broken install
            return False
    return False


def ort_providers() -> list[str]:
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def ort_distributions() -> list[str]:
    """The ONNX Runtime distributions installed. More than one share (and overwrite) one package
    directory: with ``onnxruntime`` and ``onnxruntime-gpu`` both, whichever came last is what runs."""
    found = []
    for name in ORT_DISTRIBUTIONS:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


@functools.cache
def ort_session_providers(graph: Path, providers: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]) -> list[str]:
    """The providers a session on ``graph`` really runs with, asked once per graph and providers.

    ``get_available_providers()`` lists CUDA whenever onnxruntime-gpu is installed, also when its
    CUDA or cuDNN libraries fail to load; a created session then runs on the CPU (ONNX Runtime logs
    why). ``providers``: ``((name, ((option, value), ...)), ...)`` (hashable).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=[(name, dict(options)) for name, options in providers])
    return list(session.get_providers())
