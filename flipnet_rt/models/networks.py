"""The deployable networks of DESIGN §4, as torch modules whose forward is the graph's signature.

The exporter traces exactly these modules and the torch backend runs exactly these modules, so
the two can only differ by the runtime that executes them. Names of the networks and of their
inputs and outputs are the contract (see :mod:`flipnet_rt.engine.spec`).

Tensors: ``sample`` latents ``[n, 4, h, w]``; ``timestep`` ``[n]`` float32; ``context``
``[n, 77 + N, D]``; ``phi`` ``[1]``; BoostHub keys/values ``k_XX``/``v_XX`` ``[B, L_XX, C_XX]``;
images ``[B, 3, R, R]`` in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .boosthub import BoostHubProcessor, Streams
from .flipnet import FlipNet


@dataclass(frozen=True)
class KVLayer:
    """One BoostHub's condition keys/values: ``[B, (h / 2**level) * (w / 2**level), channels]``."""

    name: str
    level: int
    channels: int


def kv_layout(model: FlipNet) -> list[KVLayer]:
    """The BoostHub layers in the UNet's processor order (the order of ``k_XX``/``v_XX``)."""
    unet = model.unet.unet
    levels = len(unet.config["block_out_channels"])
    layers = []
    hubs = {
        name.removesuffix(".processor"): p
        for name, p in unet.attn_processors.items()
        if isinstance(p, BoostHubProcessor)
    }
    for name, hub in hubs.items():
        block, *rest = name.split(".")
        if block == "down_blocks":
            level = int(rest[0])
        elif block == "up_blocks":
            level = levels - 1 - int(rest[0])
        else:  # mid_block: the lowest resolution
            level = levels - 1
        layers.append(KVLayer(name=name, level=level, channels=hub.q_x.in_features))
    return layers


class _Streams:
    """Put every BoostHub of a UNet in one stream mode for the duration of a call."""

    def __init__(self, hubs: list[BoostHubProcessor], streams: Streams) -> None:
        self.hubs, self.streams = hubs, streams

    def __enter__(self) -> None:
        for hub in self.hubs:
            hub.streams = self.streams

    def __exit__(self, *exc: object) -> None:
        for hub in self.hubs:
            hub.streams, hub.captured, hub.given = Streams.JOINT, None, None


class JointUNet(nn.Module):
    """``unet``: the dual-stream batch ``[input (B); condition (B)]`` -> ``noise_pred [2B, 4, h, w]``."""

    def __init__(self, model: FlipNet) -> None:
        super().__init__()
        self.unet = model.unet

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor, phi: torch.Tensor
    ) -> torch.Tensor:
        return self.unet(sample, timestep, context, phi)


class ConditionUNet(nn.Module):
    """``unet_cond``: the condition half alone -> every BoostHub's ``(k_XX, v_XX)``, in layout order."""

    def __init__(self, model: FlipNet) -> None:
        super().__init__()
        self.unet = model.unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hubs = self.unet.boosthubs
        with _Streams(hubs, Streams.CONDITION):
            self.unet(sample, timestep, context)
            return tuple(t for hub in hubs for t in hub.captured)


class InputUNet(nn.Module):
    """``unet_input``: the input half + the condition's K/V -> ``noise_pred [B, 4, h, w]``."""

    def __init__(self, model: FlipNet) -> None:
        super().__init__()
        self.unet = model.unet

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor, phi: torch.Tensor, *kv: torch.Tensor
    ) -> torch.Tensor:
        hubs = self.unet.boosthubs
        if len(kv) != 2 * len(hubs):
            raise ValueError(f"unet_input needs {2 * len(hubs)} K/V tensors, got {len(kv)}")
        with _Streams(hubs, Streams.INPUT):
            for i, hub in enumerate(hubs):
                hub.given = (kv[2 * i], kv[2 * i + 1])
            return self.unet(sample, timestep, context, phi)


class VaeEncoder(nn.Module):
    """``vae_encoder``: ``image [B, 3, R, R]`` -> ``latent [B, 4, R/8, R/8]`` (posterior mode, scaled)."""

    def __init__(self, model: FlipNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode(image)


class VaeDecoder(nn.Module):
    """``vae_decoder``: ``latent [B, 4, h, w]`` -> ``image [B, 3, 8h, 8w]`` (unclamped)."""

    def __init__(self, model: FlipNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model.decode(latent)


class FaceEncoder(nn.Module):
    """``face_encoder``: LQ encoder + tau, ``image [B, 3, R, R]`` -> ``id_tokens [B, N, D]``."""

    def __init__(self, model: FlipNet) -> None:
        super().__init__()
        self.face = model.face

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.face(image)


class Fidelity(nn.Module):
    """``fidelity`` (optional): ``image``, ``restored`` ``[B, 3, R, R]`` -> ``weight [B]``, how much of
    the input to keep (:mod:`.fidelity`)."""

    def __init__(self, model: FlipNet) -> None:
        super().__init__()
        if model.fidelity is None:
            raise ValueError("the model has no fidelity estimator; train one with `flipnet-train fidelity`")
        self.fidelity = model.fidelity

    def forward(self, image: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
        return self.fidelity(image, restored)


class Detector(nn.Module):
    """``detector``: the face detector, ``input [B, 3, 32h, 32w]`` (BGR minus the mean) ->
    ``loc``, ``conf``, ``landmarks`` per prior box (:mod:`flipnet_rt.faces.retinaface`). Not part of
    the FLIPNET weights: every model runs the shipped RetinaFace (:mod:`.retinaface`), in float32."""

    def __init__(self, model: FlipNet) -> None:
        super().__init__()
        from .retinaface import load_retinaface

        self.net = load_retinaface()

    def forward(self, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.net(input)


NETWORKS: dict[str, type[nn.Module]] = {
    "unet": JointUNet,
    "unet_cond": ConditionUNet,
    "unet_input": InputUNet,
    "vae_encoder": VaeEncoder,
    "vae_decoder": VaeDecoder,
    "face_encoder": FaceEncoder,
    "fidelity": Fidelity,
    "detector": Detector,
}


def model_networks(model: FlipNet) -> list[str]:
    """The networks ``model`` can run: all of :data:`NETWORKS`, ``fidelity`` only with an estimator."""
    return [name for name in NETWORKS if name != "fidelity" or model.fidelity is not None]
