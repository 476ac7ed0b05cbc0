"""One interface for every backend (Polygraphy's runner pattern): run a named network on named arrays.

A backend is chosen once (:mod:`.select` walks :mod:`.registry`); the restore loop calls ``run``
and the small array helpers below and never branches on which backend it has. Arrays are the
backend's own type (numpy for ONNX Runtime on the CPU, torch tensors for the torch backend); the
sampler's arithmetic works on either.

Lifecycle: constructing a backend touches no GPU and imports no optional dependency until first
use; ``close()`` frees everything it holds (sessions, plans, buffers, CUDA graphs, device weights),
and a backend is a context manager that closes on exit. A closed backend reopens lazily if used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.spec import NetworkSpec

Array = Any  # numpy.ndarray | torch.Tensor


class BackendUnavailable(ValueError):
    """A requested backend cannot run here; the message is one line that names the fix.

    A ValueError, as :class:`~flipnet_rt.engine.manifest.EngineError` is: the command line reports
    both as a usage error (exit status 2).
    """


@dataclass(frozen=True)
class ArrayKind:
    """The library and device of a backend's arrays (what ``from_numpy`` makes)."""

    library: str = "numpy"  # "numpy" (host memory), "torch" or "cupy"
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N"


class Backend(ABC):
    """Runs the networks of one model; subclasses write ``_run``, ``close`` and the array helpers."""

    name: str = "base"

    def __init__(self, specs: Mapping[str, NetworkSpec]) -> None:
        self.specs = dict(specs)

    @property
    def array_kind(self) -> ArrayKind:
        """The library and device of this backend's arrays: numpy in host memory here; a backend with
        other arrays says which (the face pipeline's device frame path picks its kernels by it)."""
        return ArrayKind()

    @property
    def onnx_providers(self) -> tuple[str, ...]:
        """The ONNX Runtime execution providers that put a small session beside this backend (the face
        detector's) on its device, best first, without the CPU fallback the caller adds: ``()`` unless
        the backend runs on ONNX Runtime's CUDA provider."""
        return ()

    @property
    def dtype(self) -> str:
        """numpy name of the floating dtype the networks take ("float32" or "float16")."""
        return self.specs["vae_decoder"].inputs[0].dtype

    def run(self, network: str, feeds: Mapping[str, Array]) -> dict[str, Array]:
        """Run ``network`` on ``feeds`` (every input of its spec, by name) -> outputs by name."""
        spec = self.specs.get(network)
        if spec is None:
            raise KeyError(f"{self.name} backend has no network {network!r}; it has {', '.join(self.specs)}")
        missing = [n for n in spec.input_names if n not in feeds]
        if missing:
            raise ValueError(f"{network}: missing inputs {missing}")
        return self._run(spec, feeds)

    @abstractmethod
    def _run(self, spec: NetworkSpec, feeds: Mapping[str, Array]) -> dict[str, Array]: ...

    def synchronize(self) -> None:  # noqa: B027 (a no-op by default: CPU backends have nothing queued)
        """Wait for the device's queued work (a no-op on the CPU)."""

    @abstractmethod
    def close(self) -> None:
        """Free every session, plan, buffer and graph this backend holds (idempotent)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Array helpers: enough for the restore loop, nothing more.
    @abstractmethod
    def from_numpy(self, array: np.ndarray, dtype: str | None = None) -> Array:
        """Host array -> backend array (on the backend's device; floating arrays in ``dtype``)."""

    @abstractmethod
    def to_numpy(self, array: Array) -> np.ndarray: ...

    @abstractmethod
    def concat(self, arrays: Sequence[Array], axis: int = 0) -> Array:
        """Concatenate along ``axis`` (the batch axis by default)."""

    def repeat(self, array: Array, times: int) -> Array:
        """``[n, ...] -> [times * n, ...]`` (the array ``times`` over, batch axis)."""
        return array if times == 1 else self.concat([array] * times)

    def full(self, n: int, value: float, dtype: str = "float32") -> Array:
        return self.from_numpy(np.full((n,), value, dtype=dtype), dtype)


class HostArrays:
    """Array helpers over numpy arrays in host memory (ONNX Runtime on the CPU, Triton's BLS calls).

    Host arithmetic (the sampler) stays float32; each network's feeds are cast to its spec's dtype
    when they are handed to the network.
    """

    def from_numpy(self, array: np.ndarray, dtype: str | None = None) -> np.ndarray:
        if array.dtype.kind == "f":
            return array.astype(dtype or np.float32, copy=False)
        return array

    def to_numpy(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array)

    def concat(self, arrays: Sequence[np.ndarray], axis: int = 0) -> np.ndarray:
        return np.concatenate(arrays, axis=axis)
