"""The model's AutoencoderKL: ``flipnet-train vae``.

Needed by models trained from scratch (the ``tiny`` config): they have no pretrained Stable
Diffusion VAE. (For ``sd21-base`` the VAE comes from the SD folder and stays frozen.) It learns
to reconstruct both the HQ faces and their LQ versions, since restoration encodes LQ conditions:

    L_vae = L1 + lambda_p L_p + lambda_kl KL

The posterior is sampled (reparameterised, the noise drawn from the step's generator). KL is
per image, divided by the number of image values (3 R^2) like the L1 mean, so ``kl_weight``
keeps LDM's meaning (1e-6 against a per-pixel reconstruction loss).

The latent scaling (``latent_scaling`` of flipnet.json, 0.18215 for SD) is measured as Stable
Diffusion did: 1 / std of the posterior-mode latents, tracked as an exponential moving average
over the steps and stored in the checkpoint; restoration training and ``merge`` use it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models import AutoencoderKL
from torch import nn

from .base import model_config
from .config import VaeTrainConfig
from .data import face_dataset
from .data.seeding import EpochDataset
from .loop import Batch, RunResult, Stage, TrainedPart, run_stage
from .losses import perceptual_loss
from .vgg import VGG19Features, load_vgg19

log = logging.getLogger(__name__)

EMA_DECAY = 0.99


class VaeLoss(nn.Module):
    def __init__(self, vae: AutoencoderKL, vgg: VGG19Features | None) -> None:
        super().__init__()
        self.vae, self.vgg = vae, vgg

    def forward(self, images: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images`` ``[B, 3, R, R]``, ``noise`` ``[B, C, R/f, R/f]`` -> terms (+ ``latent_std``)."""
        posterior = self.vae.encode(images).latent_dist
        z = posterior.mean + posterior.std * noise.to(posterior.mean.dtype)
        rec = self.vae.decode(z).sample.float()
        values = images[0].numel()
        out = {
            "l1": F.l1_loss(rec, images),
            "kl": posterior.kl().float().mean() / values,
            "latent_std": posterior.mode().detach().float().std(),
        }
        if self.vgg is not None:
            out["perceptual"] = perceptual_loss(self.vgg, rec, images)
        return out


class VaeStage(Stage):
    name = "vae"

    def __init__(self, config: VaeTrainConfig) -> None:
        self.config = config
        flip_config = model_config(config.model)
        self.vae_config = dict(flip_config.vae)
        if config.model.sd_dir:  # fine-tune the SD folder's VAE
            folder = Path(config.model.sd_dir) / "vae"
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"--sd-dir {config.model.sd_dir}: no vae/ folder; pass a local diffusers SD folder"
                )
            self.vae = AutoencoderKL.from_pretrained(folder, use_safetensors=True, local_files_only=True)
            self.vae_config = {k: v for k, v in self.vae.config.items() if not k.startswith("_")}
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.model.seed)
                self.vae = AutoencoderKL(**self.vae_config)
        self.vae.train()
        if config.run.gradient_checkpointing:
            self.vae.enable_gradient_checkpointing()
        vgg = None
        if config.vae.perceptual_weight > 0:
            vgg = load_vgg19(config.perceptual.vgg19, config.perceptual.layers)
        self.loss = VaeLoss(self.vae, vgg)
        self.terms = ("loss", "l1", "kl") + (("perceptual",) if vgg is not None else ()) + ("latent_std",)
        self.latent_std: float | None = None
        self.factor = 2 ** (len(self.vae_config["block_out_channels"]) - 1)

    def parts(self) -> list[TrainedPart]:
        return [TrainedPart("model", self.vae, self.loss, self.config.optim.lr)]

    def micro_step(self, batch: Batch, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        section = self.config.vae
        images = torch.cat([batch.hq, batch.lq])
        size = images.shape[-1] // self.factor
        noise = torch.randn(
            (images.shape[0], self.vae_config.get("latent_channels", 4), size, size), generator=generator
        )
        out = self.modules["model"](images, noise.to(images.device))
        loss = section.l1_weight * out["l1"] + section.kl_weight * out["kl"]
        if "perceptual" in out:
            loss = loss + section.perceptual_weight * out["perceptual"]
        self.accelerator.backward(loss)
        std = float(out["latent_std"])
        self.latent_std = std if self.latent_std is None else EMA_DECAY * self.latent_std + (1 - EMA_DECAY) * std
        out = {k: v.detach() for k, v in out.items() if k != "rec"}
        out["loss"] = loss.detach()
        return out

    def extra_state(self) -> dict[str, Any]:
        return {
            "latent_std": self.latent_std,
            "latent_scaling": 1.0 / self.latent_std if self.latent_std else None,
            "vae_config": self.vae_config,
        }

    def load_extra(self, extra: dict[str, Any]) -> None:
        self.latent_std = extra.get("latent_std")


def train_vae(
    config: VaeTrainConfig,
    *,
    dataset: EpochDataset | None = None,
    resume: str | Path | None = None,
    accelerator: Any = None,
    progress: bool = True,
) -> RunResult:
    """``flipnet-train vae``."""
    return run_stage(
        config,
        lambda accelerator, resume_dir: VaeStage(config),
        lambda stage: face_dataset(config.data, model_config(config.model).resolution, config.run.seed),
        dataset=dataset,
        resume=resume,
        accelerator=accelerator,
        progress=progress,
    )
