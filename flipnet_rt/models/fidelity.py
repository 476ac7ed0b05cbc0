"""The fidelity estimator: how much of the input face to keep, decided per face from what the
runtime has (the model's input and its restoration), never from a ground truth.

``weight = FidelityNet(image, restored)`` in [0, 1]; the face that goes back into the photo is
``weight * input + (1 - weight) * restored`` (:mod:`flipnet_rt.faces.fidelity`). Trained after the
restorer, on the restorer's own outputs for faces degraded at every level from none to the
training degradation (``flipnet-train fidelity``, :mod:`flipnet_rt.train.fidelity`), to predict the weight
whose blend is closest to the HQ face (known in training only).

Architecture: ``[image, restored, image - restored]`` (9 channels) -> a 3x3 convolution at full
resolution (the input's noise and blur are in its top band), then stride-2 3x3 convolutions
(ReLU after each) -> global mean -> linear -> sigmoid. 61 k weights; at 64 px 17 M multiply-adds a face.
"""

from __future__ import annotations

import torch
from torch import nn

#: Channels of each convolution (the first at full resolution, the others halve it).
FIDELITY_CHANNELS = (16, 32, 64, 64)


class FidelityNet(nn.Module):
    """``image``, ``restored`` ``[B, 3, R, R]`` in [-1, 1] -> ``weight [B]`` in [0, 1] (1: keep the input)."""

    def __init__(self, channels: tuple[int, ...] = FIDELITY_CHANNELS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 9
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(width, c, 3, stride=1 if i == 0 else 2, padding=1), nn.ReLU()]
            width = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)
        self.channels = tuple(channels)

    def forward(self, image: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
        x = torch.cat([image, restored, image - restored], dim=1)
        pooled = self.features(x).mean(dim=(2, 3))
        return torch.sigmoid(self.head(pooled)).squeeze(1)
