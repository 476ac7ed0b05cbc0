"""BFR-oriented face embeddings (Sec. 4.1): the face autoencoder and the adapter tau.

The autoencoder has a continuous latent (no codebook): an HQ encoder and an LQ encoder map a face
``[B, 3, R, R]`` to ``[B, d, g, g]``, flattened to N = g*g tokens of width d; one decoder maps
latents back to images. It is trained in a reconstruction stage, then an association stage (Eq. 6)
that pulls HQ and LQ tokens of the same patch together. At inference only the LQ encoder and tau
run: ``c_id = tau(z_y)`` gives N tokens of the text width, appended to the 77 text tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config.model import FaceSpec


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, max(1, channels // 4)), channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(c_in),
            nn.SiLU(),
            nn.Conv2d(c_in, c_out, 3, padding=1),
            _norm(c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class FaceEncoder(nn.Module):
    """``[B, 3, R, R]`` in [-1, 1] -> latent ``[B, d, g, g]``; one stride-2 level per channel step."""

    def __init__(self, spec: FaceSpec) -> None:
        super().__init__()
        ch = spec.channels
        layers: list[nn.Module] = [nn.Conv2d(3, ch[0], 3, padding=1)]
        for i, c in enumerate(ch):
            c_prev = ch[max(i - 1, 0)]
            layers += [ResBlock(c_prev if j == 0 else c, c) for j in range(spec.blocks_per_level)]
            if i < len(ch) - 1:
                layers.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        layers += [_norm(ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], spec.dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


class FaceDecoder(nn.Module):
    """Latent ``[B, d, g, g]`` -> image ``[B, 3, R, R]`` (unbounded; trained towards [-1, 1])."""

    def __init__(self, spec: FaceSpec) -> None:
        super().__init__()
        ch = tuple(reversed(spec.channels))
        layers: list[nn.Module] = [nn.Conv2d(spec.dim, ch[0], 3, padding=1)]
        for i, c in enumerate(ch):
            c_prev = ch[max(i - 1, 0)]
            layers += [ResBlock(c_prev if j == 0 else c, c) for j in range(spec.blocks_per_level)]
            if i < len(ch) - 1:
                layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)]
        layers += [_norm(ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)


def to_tokens(latent: torch.Tensor) -> torch.Tensor:
    """``[B, d, g, g] -> [B, N, d]`` (row-major patches, N = g*g)."""
    return latent.flatten(2).transpose(1, 2)


class FaceAutoencoder(nn.Module):
    """HQ and LQ encoders and one decoder (the training-time model; Sec. 4.1 a, b)."""

    def __init__(self, spec: FaceSpec) -> None:
        super().__init__()
        self.hq_encoder = FaceEncoder(spec)
        self.lq_encoder = FaceEncoder(spec)
        self.decoder = FaceDecoder(spec)


class IdAdapter(nn.Module):
    """tau: id tokens ``[B, N, d]`` -> ``[B, N, D]`` (linear layers with LayerNorm, as IP-Adapter)."""

    def __init__(self, dim: int, hidden: int, text_width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, text_width), nn.LayerNorm(text_width)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)


class FaceEmbedder(nn.Module):
    """The deployed face network: LQ encoder + tau. ``[B, 3, R, R]`` -> c_id ``[B, N, D]``."""

    def __init__(self, spec: FaceSpec, text_width: int) -> None:
        super().__init__()
        self.encoder = FaceEncoder(spec)
        self.adapter = IdAdapter(spec.dim, spec.adapter_hidden, text_width)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.adapter(to_tokens(self.encoder(image)))
