"""CUDA device arrays and streams shared by the GPU backends (TensorRT, ONNX Runtime CUDA).

Device memory is torch CUDA tensors today; torch is imported on first use, never at import time,
so importing this module costs nothing on a CPU-only install.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)  # "float32", "float16", "bfloat16", "int32", "int64", "bool"


class TorchDeviceArrays:
    """Array helpers over torch tensors on one CUDA device (TensorRT and ONNX Runtime CUDA backends).

    Floating host arrays become float32 device tensors unless a dtype is given: the sampler's
    arithmetic stays float32 and each network's feeds are cast to its spec's dtype when copied
    into its buffers (as the ONNX Runtime CPU backend casts at feed time).
    """

    device: str  # "cuda:N"

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


class DeviceStream:
    """The backend's one CUDA stream (``torch.cuda.Stream``), ordered after torch's current stream
    on entry and before it on exit, so tensors flow between the sampler (current stream) and the
    networks (this stream) without a host synchronisation."""

    def __init__(self, device: str) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device)
        self._context: Any = None

    @property
    def handle(self) -> int:
        """The ``cudaStream_t`` as an int, for ``execute_async_v3`` and ONNX Runtime."""
        return int(self.stream.cuda_stream)

    def __enter__(self) -> "DeviceStream":
        torch = self._torch
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        self._context = torch.cuda.stream(self.stream)
        self._context.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(*exc)
        self._torch.cuda.current_stream(self.device).wait_stream(self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

