"""FLIPNET (Fig. 2): the networks of one model and the tensors that tie them together."""

from __future__ import annotations

import torch
from diffusers.models import AutoencoderKL, UNet2DConditionModel  # (top level: mypy reads the torch-less dummies)
from torch import nn

from ..config.model import FlipnetConfig
from ..config.options import Mode
from .face import FaceEmbedder
from .fidelity import FidelityNet
from .unet import FlipNetUNet, build_unet

PROMPT_KINDS = ("restore", "negative", "degrade")


def stream_order(mode: Mode, hq: torch.Tensor, lq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input, condition)`` for a mode: the whole difference between the two modes."""
    return (hq, lq) if mode is Mode.RESTORE else (lq, hq)


class FlipNet(nn.Module):
    """The deployed model: UNet + BoostHub (LoRA merged), VAE, face embedder, prompt embeddings.

    Tensors: images ``[B, 3, R, R]`` in [-1, 1]; latents ``[B, 4, R/8, R/8]`` (scaled by
    ``config.latent_scaling``); context ``[B, 77 + N, D]``.
    """

    def __init__(
        self,
        config: FlipnetConfig,
        *,
        unet: UNet2DConditionModel | None = None,
        vae: AutoencoderKL | None = None,
    ) -> None:
        """Random weights where ``unet`` (with BoostHub) or ``vae`` is not given."""
        super().__init__()
        self.config = config
        self.unet = FlipNetUNet(unet if unet is not None else build_unet(config.unet))
        self.vae = vae if vae is not None else AutoencoderKL(**dict(config.vae))
        self.face = FaceEmbedder(config.face, config.text_width)
        # the optional fidelity estimator (models/fidelity.py), trained after the rest on its outputs
        self.fidelity: FidelityNet | None = None
        shape = (config.text_tokens, config.text_width)
        for kind in PROMPT_KINDS:
            self.register_buffer(f"prompt_{kind}", torch.zeros(shape))

    def prompt(self, kind: str) -> torch.Tensor:
        """The stored embedding of a fixed prompt: ``[77, D]``."""
        if kind not in PROMPT_KINDS:
            raise KeyError(f"unknown prompt {kind!r}; known: {', '.join(PROMPT_KINDS)}")
        return getattr(self, f"prompt_{kind}")

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """VAE encoder, distribution mode (deterministic): ``[B,3,R,R] -> [B,4,R/8,R/8]``."""
        return self.vae.encode(images).latent_dist.mode() * self.config.latent_scaling

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE decoder: ``[B,4,R/8,R/8] -> [B,3,R,R]`` (unclamped)."""
        return self.vae.decode(latents / self.config.latent_scaling).sample

    def context(self, prompt: str, id_tokens: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Cross-attention context ``[text (77) || id (N)]``: ``[B, 77 + N, D]``.

        ``id_tokens`` ``[B, N, D]`` from :attr:`face`, or None for a dropped embedding (the
        unconditional branch, degradation mode): N zero tokens, so shapes never change.
        """
        text = self.prompt(prompt).unsqueeze(0).expand(batch, -1, -1)
        if id_tokens is None:
            id_tokens = text.new_zeros(batch, self.config.face.tokens, self.config.text_width)
        return torch.cat([text, id_tokens.to(text.dtype)], dim=1)

    def denoise_pair(
        self,
        x_input: torch.Tensor,
        x_condition: torch.Tensor,
        t_input: torch.Tensor,
        t_condition: torch.Tensor,
        context: torch.Tensor,
        phi: float | torch.Tensor = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One UNet call on ``[input; condition]`` (Eq. 7): the noise predicted for each stream.

        ``x_*`` ``[B, 4, h, w]``, ``t_*`` ``[B]``, ``context`` ``[B, L, D]`` (both streams of a
        sample share it).
        """
        out = self.unet(
            torch.cat([x_input, x_condition]),
            torch.cat([t_input, t_condition]),
            torch.cat([context, context]),
            phi,
        )
        return out.chunk(2)
