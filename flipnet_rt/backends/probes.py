"""What is installed and visible here, asked without importing what the answer does not need.

Module functions, so that tests can monkeypatch what "installed" and "visible" mean.
"""

from __future__ import annotations

import importlib.util


def tensorrt_installed() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def cuda_visible() -> bool:
    """A CUDA GPU visible to torch (imports torch; only asked when a GPU candidate needs it)."""
    if not torch_installed():
        return False
    import torch

    return torch.cuda.is_available()


def ort_providers() -> list[str]:
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime

    return list(onnxruntime.get_available_providers())
