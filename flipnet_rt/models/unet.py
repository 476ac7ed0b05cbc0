"""The FLIPNET denoiser: Stable Diffusion's UNet with BoostHub, over the dual-stream batch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers.models import UNet2DConditionModel
from torch import nn

from .boosthub import add_boosthub, boosthub_processors


def build_unet(unet_config: Mapping[str, Any], *, boosthub: bool = True) -> UNet2DConditionModel:
    """A randomly initialised diffusers UNet from its constructor arguments, BoostHub added."""
    unet = UNet2DConditionModel(**dict(unet_config))
    if boosthub:
        add_boosthub(unet)
    return unet


def load_base_unet(diffusers_dir: Path, *, boosthub: bool = True) -> UNet2DConditionModel:
    """The UNet of a local Stable Diffusion folder (``<dir>/unet``), BoostHub added afterwards.

    Loads safetensors only and never touches the network. BoostHub is added after loading, so
    its W_Qx/W_Ky/W_Vy copy the *pretrained* to_q/to_k/to_v (Eq. 4 initialisation).
    """
    folder = Path(diffusers_dir) / "unet"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder}/config.json: not found; pass the root of a local diffusers Stable Diffusion "
            f"folder (it has unet/, vae/, text_encoder/, tokenizer/)"
        )
    unet = UNet2DConditionModel.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    if boosthub:
        add_boosthub(unet)
    return unet


class FlipNetUNet(nn.Module):
    """ε_θ over the dual-stream batch (DESIGN §1).

    forward(sample [2B, 4, h, w], timestep [2B] (``[t_in (B); t_cond (B)]``),
    context [2B, 77 + N, D], phi) -> noise prediction [2B, 4, h, w], same dtype as ``sample``.
    The first B samples are the input stream, the last B the condition stream.
    """

    def __init__(self, unet: UNet2DConditionModel) -> None:
        super().__init__()
        self.unet = unet
        self._boosthubs = boosthub_processors(unet)

    @property
    def boosthubs(self) -> list:
        return self._boosthubs

    def set_phi(self, phi: float | torch.Tensor) -> None:
        """Set the enhance weight phi of Eq. (5) on every BoostHub."""
        for hub in self._boosthubs:
            hub.phi = phi

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        phi: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        if timestep.shape != (sample.shape[0],) or context.shape[0] != sample.shape[0]:
            raise ValueError(
                f"expected sample [n,C,h,w], timestep [n], context [n,L,D] (n = 2B for the dual-stream "
                f"batch); got {tuple(sample.shape)}, {tuple(timestep.shape)}, {tuple(context.shape)}"
            )
        self.set_phi(phi)
        return self.unet(sample, timestep, encoder_hidden_states=context, return_dict=False)[0]
