"""FLOP counts of each network, taken from the model with ``torch.utils.flop_counter`` (counted once).

``FlopCounterMode`` has no formula for the CPU flash-attention kernel
(``aten._scaled_dot_product_flash_attention_for_cpu``), so on the CPU it silently skips
attention (678 instead of 804 GFLOP for one SD 2.1 UNet pass at 64x64): the same formula as the
GPU kernels is registered for it here. Counting runs on the ``meta`` device: no memory, no time.
"""

from __future__ import annotations

import copy
import functools

import torch
from torch.utils import flop_counter

from ..models.flipnet import FlipNet
from ..models.networks import NETWORKS


@functools.cache
def _register_cpu_sdpa() -> None:
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(op)
    def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(model: FlipNet, network: str, feeds: dict[str, torch.Tensor]) -> int:
    """FLOPs of one call of ``network`` on inputs shaped like ``feeds`` (values are irrelevant)."""
    _register_cpu_sdpa()
    with torch.device("meta"):
        meta_model = copy.deepcopy(model).to("meta")
    module = NETWORKS[network](meta_model)
    args = [t.to("meta") for t in feeds.values()]
    counter = flop_counter.FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(*args)
    return int(counter.get_total_flops())
