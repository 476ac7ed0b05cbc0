"""PyTorch backend: eager execution of the very modules that are exported; the parity reference.

Two speed options, both off by default (then the backend is plain eager PyTorch):

- ``compile``: ``torch.compile`` (Inductor) of the UNet networks (``unet``, ``unet_cond``,
  ``unet_input``). Cost: each network's first call at each new input shape compiles it: minutes
  for sd21-base on a GPU, and 1-2.5 minutes per *tiny* UNet network on 2 CPU cores (measured: 141 s
  for tiny ``unet_cond`` with torch 2.13). A second shape recompiles (dynamo then makes the shapes
  dynamic), and beyond dynamo's recompile limit it falls back to eager. Results equal eager
  execution within float rounding (fusions reorder sums). Works on the CPU, slowly to compile.
- ``cuda_graphs`` (CUDA devices only): capture one CUDA graph per network and input shapes after
  warm-up runs, then replay it, copying the feeds into the graph's static input tensors. Cost:
  one private memory pool per graph (activations are held, not freed between calls), a capture
  per new shape, and **outputs are reused buffers**: a network's outputs for a given input shape
  are the same tensors at every call, overwritten by the next call of that network with that
  shape (``tensor.clone()`` keeps one; a half-precision backend's outputs are float32 copies, its
  K/V excepted). The restore loop reads each output before that happens.
  An input fed with another graph's output (``unet_input``'s K/V are ``unet_cond``'s, DESIGN §3)
  is captured reading that output where it is: no copy per call. Should a later call feed that
  input something else, the graph is captured again with a buffer of its own.

fp16/bf16 on a GPU come from ``dtype``. Dtypes as the GPU engines' arrays (:mod:`.cuda`): floating
host arrays become **float32** tensors (``from_numpy``), so the sampler's state, the guidance
``u + s (c - u)`` and every update stay float32 whatever ``dtype`` is; ``dtype`` is the networks'
compute dtype only. Each network's floating feeds are cast to its dtype where they enter it (the
timesteps stay float32, as the specs say) and its outputs come back float32, except the condition's
K/V (``unet_cond``'s outputs), which only ever feed ``unet_input`` and stay in the compute dtype
(no cast per step, and a CUDA graph reads them in place).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..engine.spec import KVSpec, NetworkSpec, network_specs
from ..models.flipnet import FlipNet
from ..models.networks import NETWORKS, kv_layout
from .base import Array, ArrayKind, Backend

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
UNET_NETWORKS = ("unet", "unet_cond", "unet_input")
KV_NETWORKS = ("unet_cond",)  # outputs only ever fed to another network: left in the compute dtype
GRAPH_WARMUP = 2  # eager (or compiling) runs on a side stream before a capture, as torch's docs advise

GraphKey = tuple[str, tuple[tuple[tuple[int, ...], torch.dtype], ...]]


@dataclass
class _Graphed:
    """One network at one input shape: static inputs, the captured graph, its static outputs."""

    inputs: list[torch.Tensor]
    outputs: tuple[torch.Tensor, ...]
    graph: Any  # torch.cuda.CUDAGraph (anything with replay())


class TorchBackend(Backend):
    """Runs :mod:`flipnet_rt.models.networks` modules on ``device`` in ``dtype``.

    Args:
        model: the FlipNet (moved to ``device`` and ``dtype``, set to eval and frozen at the first
            call: constructing the backend touches no device).
        device: "cpu", "cuda" or "cuda:N".
        dtype: the networks' compute dtype, "float32", "float16" or "bfloat16" (fp16/bf16 are for
            GPUs); the arrays the backend hands out are float32 (see the module docstring).
        compile: ``torch.compile`` the UNet networks; see the module docstring for the cost.
        cuda_graphs: one CUDA graph per network and input shapes (CUDA only); outputs are reused
            buffers, see the module docstring.
    """

    name = "torch"

    def __init__(
        self,
        model: FlipNet,
        device: str | torch.device = "cpu",
        dtype: str = "float32",
        *,
        compile: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype: {dtype!r}; use one of {', '.join(DTYPES)}")
        self.device = torch.device(device)
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs: needs a CUDA device, not {self.device}; use --device cuda or drop it")
        self.torch_dtype = DTYPES[dtype]
        self.model = model
        kv = [KVSpec(layer.level, layer.channels) for layer in kv_layout(model)]
        spec_dtype = "float16" if dtype == "bfloat16" else dtype  # specs speak numpy; bf16 has no numpy name
        super().__init__(network_specs(model.config, kv, spec_dtype, fidelity=model.fidelity is not None))
        self.compile = compile
        self.cuda_graphs = cuda_graphs
        self._callables: dict[str, Callable[..., Any]] = {}  # filled by the first call (_open)
        self._graphs: dict[GraphKey, _Graphed] = {}
        self._graph_outputs: dict[int, torch.Tensor] = {}  # id -> every captured graph's static outputs

    @property
    def array_kind(self) -> ArrayKind:
        """torch tensors on ``device``."""
        return ArrayKind("torch", str(self.device))

    def _open(self) -> None:
        """Move the model to the device and wrap the networks (once; again after ``close``).
        torch.compile is lazy, so nothing compiles before a network's first call."""
        self.model.to(device=self.device, dtype=self.torch_dtype).eval().requires_grad_(False)
        # eager, as exported; .to() moves the networks not made of the model's modules (the detector)
        modules = {name: NETWORKS[name](self.model).to(self.device) for name in self.specs}
        self._callables = {
            name: torch.compile(module) if self.compile and name in UNET_NETWORKS else module
            for name, module in modules.items()
        }

    @torch.inference_mode()
    def _run(self, spec: NetworkSpec, feeds: Mapping[str, Array]) -> dict[str, Array]:
        if not self._callables:
            self._open()
        args = [self._feed(feeds[t.name], t.dtype) for t in spec.inputs]
        if self.cuda_graphs:
            out = self._replay(spec.name, args)
        else:
            out = self._callables[spec.name](*args)
        out = out if isinstance(out, tuple) else (out,)
        if spec.name not in KV_NETWORKS:  # K/V stay in the compute dtype: unet_input's feeds as they are
            out = tuple(o.float() if o.is_floating_point() else o for o in out)
        return dict(zip(spec.output_names, out))

    def _feed(self, array: Array, dtype: str) -> Array:
        """A floating feed in the network's dtype (spec ``dtype``: "float32" stays float32, as the
        timesteps; the half name is the compute dtype, bf16 included); the tensor itself when it is
        one already (a K/V output, an already cast input), so no copy is made."""
        if isinstance(array, torch.Tensor) and array.is_floating_point():
            wanted = torch.float32 if dtype == "float32" else self.torch_dtype
            return array if array.dtype == wanted else array.to(wanted)
        return array

    # ------------------------------------------------------------------ CUDA graphs
    def _replay(self, network: str, args: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        key: GraphKey = (network, tuple((tuple(a.shape), a.dtype) for a in args))
        graphed = self._graphs.get(key)
        if graphed is not None and any(
            static is not arg and self._is_graph_output(static) for static, arg in zip(graphed.inputs, args)
        ):
            graphed = None  # an input read from another graph's output now gets something else
        if graphed is None:
            inputs = [a if self._is_graph_output(a) else a.clone() for a in args]  # outputs: read in place
            graphed = self._graphs[key] = self._capture(network, inputs)
            self._graph_outputs.update((id(t), t) for t in graphed.outputs)
            log.debug("%s: captured a CUDA graph for %s", network, [s for s, _ in key[1]])
        for static, arg in zip(graphed.inputs, args):
            if static is not arg:
                static.copy_(arg)
        graphed.graph.replay()
        return graphed.outputs

    def _is_graph_output(self, tensor: torch.Tensor) -> bool:
        return self._graph_outputs.get(id(tensor)) is tensor

    def _capture(self, network: str, inputs: list[torch.Tensor]) -> _Graphed:
        """Warm up on a side stream (compiles, autotunes, allocates), then capture one call."""
        function = self._callables[network]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP):
                function(*inputs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = function(*inputs)
        return _Graphed(inputs, out if isinstance(out, tuple) else (out,), graph)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        """Drop every captured graph (and its memory pool) and compiled wrapper; on a GPU the
        weights go back to the host, so the device memory is free. The next call reopens."""
        self.synchronize()
        self._graphs.clear()
        self._graph_outputs.clear()
        self._callables = {}
        if self.device.type == "cuda":
            self.model.to("cpu")
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ arrays
    def from_numpy(self, array: np.ndarray, dtype: str | None = None) -> torch.Tensor:
        """Host array -> tensor on the device, same shape: floating arrays in ``dtype`` ("float32",
        "float16", "bfloat16"; default float32, whatever the compute dtype: the sampler's state and
        arithmetic stay float32 and ``run`` casts each feed to its network's dtype), others as they are."""
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if array.dtype.kind == "f":
            wanted = DTYPES.get(dtype or "float32")
            if wanted is None:
                raise ValueError(f"dtype: {dtype!r}; use one of {', '.join(DTYPES)}")
            return tensor.to(self.device, wanted)
        return tensor.to(self.device)

    def to_numpy(self, array: torch.Tensor) -> np.ndarray:
        return array.detach().float().cpu().numpy()

    def concat(self, arrays: Sequence[torch.Tensor], axis: int = 0) -> torch.Tensor:
        return torch.cat(list(arrays), dim=axis)
