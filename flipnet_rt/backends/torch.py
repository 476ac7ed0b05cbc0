"""PyTorch backend: eager execution of the very modules that are exported; the parity reference."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ..engine.spec import KVSpec, NetworkSpec, network_specs
from ..models.flipnet import FlipNet
from ..models.networks import NETWORKS, kv_layout
from .base import Array, Backend

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class TorchBackend(Backend):
    """Runs :mod:`flipnet_rt.models.networks` modules on ``device`` in ``dtype``."""

    name = "torch"

    def __init__(self, model: FlipNet, device: str | torch.device = "cpu", dtype: str = "float32") -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype: {dtype!r}; use one of {', '.join(DTYPES)}")
        self.device = torch.device(device)
        self.torch_dtype = DTYPES[dtype]
        self.model = model.to(device=self.device, dtype=self.torch_dtype).eval().requires_grad_(False)
        kv = [KVSpec(layer.level, layer.channels) for layer in kv_layout(self.model)]
        spec_dtype = "float16" if dtype == "bfloat16" else dtype  # specs speak numpy; bf16 has no numpy name
        super().__init__(network_specs(model.config, kv, spec_dtype))
        self.modules = {name: cls(self.model) for name, cls in NETWORKS.items()}

    @torch.inference_mode()
    def _run(self, spec: NetworkSpec, feeds: Mapping[str, Array]) -> dict[str, Array]:
        args = [feeds[name] for name in spec.input_names]
        out = self.modules[spec.name](*args)
        out = out if isinstance(out, tuple) else (out,)
        return dict(zip(spec.output_names, out))

    def from_numpy(self, array: np.ndarray, dtype: str | None = None) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if dtype == "float32" and array.dtype.kind == "f":  # timesteps stay float32
            return tensor.to(self.device, torch.float32)
        if array.dtype.kind == "f":
            return tensor.to(self.device, self.torch_dtype)
        return tensor.to(self.device)

    def to_numpy(self, array: torch.Tensor) -> np.ndarray:
        return array.detach().float().cpu().numpy()

    def concat(self, arrays: Sequence[torch.Tensor], axis: int = 0) -> torch.Tensor:
        return torch.cat(list(arrays), dim=axis)
