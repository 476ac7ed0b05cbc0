"""FLOP counts of each network, taken from the model with ``torch.utils.flop_counter``, once per model.

``FlopCounterMode`` has no formula for the CPU flash-attention kernel
(``aten._scaled_dot_product_flash_attention_for_cpu``), so on the CPU it silently skips
attention (678 instead of 804 GFLOP for one SD 2.1 UNet pass at 64x64): the same formula as the
GPU kernels is registered for it here. Counting runs on the ``meta`` device: no memory, no time.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

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


def meta_copy(model: FlipNet) -> FlipNet:
    """The model on the ``meta`` device (shapes only): one deep copy, made once per model."""
    with torch.device("meta"):
        return copy.deepcopy(model).to("meta")


def count_flops(model: FlipNet, network: str, feeds: dict[str, torch.Tensor]) -> int:
    """FLOPs of one call of ``network`` on inputs shaped like ``feeds`` (values are irrelevant).

    ``model`` on the meta device (:func:`meta_copy`) costs nothing more; any other is copied there."""
    _register_cpu_sdpa()
    meta_model = model if _on_meta(model) else meta_copy(model)
    module = NETWORKS[network](meta_model)
    args = [t.to("meta") for t in feeds.values()]
    counter = flop_counter.FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(*args)
    return int(counter.get_total_flops())


def _on_meta(model: FlipNet) -> bool:
    return all(p.device.type == "meta" for p in model.parameters())


@dataclass(frozen=True)
class ModelFlops:
    """One image's FLOPs per network call, counted once per model (batch 1, the model's resolution)."""

    vae_encoder: int
    face_encoder: int
    vae_decoder: int
    unet_cond: int  # the condition half, once per image and guidance branch
    unet: int  # the joint graph on [x; y_t]

    @classmethod
    def count(cls, model: FlipNet) -> ModelFlops:
        meta = meta_copy(model)  # the only copy
        c = model.config
        h = c.latent_size
        image = {"image": torch.zeros(1, 3, c.resolution, c.resolution)}
        one = {
            "sample": torch.zeros(1, c.latent_channels, h, h),
            "timestep": torch.zeros(1),
            "context": torch.zeros(1, c.context_tokens, c.text_width),
        }
        joint = {**{k: torch.cat([v, v]) for k, v in one.items()}, "phi": torch.ones(1)}
        return cls(
            vae_encoder=count_flops(meta, "vae_encoder", image),
            face_encoder=count_flops(meta, "face_encoder", image),
            vae_decoder=count_flops(meta, "vae_decoder", {"latent": torch.zeros(1, c.latent_channels, h, h)}),
            unet_cond=count_flops(meta, "unet_cond", one),
            unet=count_flops(meta, "unet", joint),
        )

    def per_image(self, cond_cache: bool, steps: int, branches: int) -> float:
        """FLOPs one image costs: encoders and decoder once, the UNet ``steps`` times per branch
        (with the cache: the condition half once, then the input half, joint minus condition)."""
        total = self.vae_encoder + self.face_encoder + self.vae_decoder
        if cond_cache:
            total += branches * (self.unet_cond + steps * (self.unet - self.unet_cond))
        else:
            total += branches * steps * self.unet
        return float(total)
