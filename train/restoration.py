"""FLIPNET training, restoration mode (Sec. 4.1) and degradation mode (Sec. 4.2).

One step, for a batch of HQ/LQ pairs (``stream_order`` puts HQ first in restoration mode and LQ
first in degradation mode; that is the whole difference between the modes' inputs):

    z_x, z_y  = VAE(input), VAE(condition)                          frozen, posterior mode
    t_x, t_y  ~ U[0, T) independently,  eps_x, eps_y ~ N(0, I)      separately per stream
                                                                    (t_y < t_cond_max where set)
    x_t, y_t  = Eq. (1) at t_x and t_y
    c         = [text (77) || id tokens (N)]                        text dropped w.p. 0.5 (empty prompt);
                                                                    id = tau(E_LQ(lq)), dropped w.p. 0.3
                                                                    (N zero tokens; always zero in
                                                                    degradation mode and for non-faces)
    eps_hat   = UNet([x_t; y_t], [t_x; t_y], c)                     one call, BoostHub inside
    L_ldm     = ||eps - eps_hat||^2 over both streams               Eq. (7)
    restoration only:
    z0_hat    = (x_t - sqrt(1 - ab) eps_hat_x) / sqrt(ab)           Eq. (3)
    L_rm      = L_ldm + 1 * ||x - D(z0_hat)||^2 + 0.01 * L_p        Eq. (8), L_p on VGG19 features

Trainable: LoRA on every attn1/attn2 projection, BoostHub, and tau (restoration mode); the
VAE, the face encoder and the base UNet stay frozen (``unet_training = "full"`` trains every
UNet weight instead, for models trained from scratch).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flipnet_rt.models import FlipNet, Mode, stream_order
from flipnet_rt.sampling import ScheduleConfig

from .base import BASE_DIR, build_base, digest, make_trainable, read_base, write_base
from .checkpoint import CheckpointError, read_state, read_weights, resolve_checkpoint
from .config import DegradationTrainConfig, RestorationTrainConfig
from .data import degradation_dataset, face_dataset
from .data.seeding import EpochDataset
from .loop import Batch, RunResult, Stage, TrainedPart, run_stage
from .losses import perceptual_loss
from .text import CaptionEncoder, PromptBank
from .vgg import VGG19Features, load_vgg19

log = logging.getLogger(__name__)

DiffusionConfig = RestorationTrainConfig | DegradationTrainConfig


def config_mode(config: DiffusionConfig) -> Mode:
    return Mode.RESTORE if isinstance(config, RestorationTrainConfig) else Mode.DEGRADE


class DiffusionLoss(nn.Module):
    """The losses of one micro-batch (the module Accelerate prepares: DDP syncs its trainables)."""

    sqrt_ab: torch.Tensor  # buffers
    sqrt_1m_ab: torch.Tensor

    def __init__(
        self,
        model: FlipNet,
        mode: Mode,
        *,
        mse_weight: float = 0.0,
        perceptual_weight: float = 0.0,
        vgg: VGG19Features | None = None,
    ) -> None:
        super().__init__()
        self.model, self.mode, self.vgg = model, mode, vgg
        self.mse_weight = mse_weight if mode is Mode.RESTORE else 0.0
        self.perceptual_weight = perceptual_weight if mode is Mode.RESTORE and vgg is not None else 0.0
        spec = model.config.schedule
        schedule = ScheduleConfig(
            beta_start=spec.beta_start,
            beta_end=spec.beta_end,
            num_train_timesteps=spec.num_train_timesteps,
            prediction_type=spec.prediction_type,
        )
        self.v_prediction = schedule.prediction_type.value == "v_prediction"
        ab = schedule.alphas_cumprod()  # float64 [T], the sampler's own table
        self.register_buffer("sqrt_ab", torch.tensor(np.sqrt(ab), dtype=torch.float32), persistent=False)
        self.register_buffer("sqrt_1m_ab", torch.tensor(np.sqrt(1.0 - ab), dtype=torch.float32), persistent=False)

    def _coef(self, table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return table[t].view(-1, 1, 1, 1)

    def forward(
        self,
        hq: torch.Tensor,
        lq: torch.Tensor,
        text: torch.Tensor,
        id_keep: torch.Tensor,
        noise: torch.Tensor,
        t: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """``hq``, ``lq`` ``[B, 3, R, R]``; ``text`` ``[B, 77, D]``; ``id_keep`` float ``[B]`` (1 keeps
        the id tokens); ``noise`` ``[2B, C, h, w]`` = ``[eps_x; eps_y]``; ``t`` long ``[2B]`` = ``[t_x; t_y]``."""
        model = self.model
        x, y = stream_order(self.mode, hq, lq)
        with torch.no_grad():
            z0 = model.encode(torch.cat([x, y])).float()
        a, s = self._coef(self.sqrt_ab, t), self._coef(self.sqrt_1m_ab, t)
        z_t = a * z0 + s * noise  # Eq. (1), each stream at its own timestep
        batch = hq.shape[0]
        if self.mode is Mode.RESTORE:
            # A dropped embedding is N zero tokens (FlipNet.context(..., None, B)); multiplying keeps
            # tau in the graph for every batch (DDP expects a gradient for each trainable).
            ids = model.face(lq) * id_keep.view(-1, 1, 1).to(text.dtype)
        else:
            ids = text.new_zeros(batch, model.config.face.tokens, model.config.text_width)
        context = torch.cat([text, ids.to(text.dtype)], dim=1)
        pred_x, pred_y = model.denoise_pair(z_t[:batch], z_t[batch:], t[:batch], t[batch:], context)
        pred = torch.cat([pred_x, pred_y]).float()
        target = a * noise - s * z0 if self.v_prediction else noise
        per_stream = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        terms = {
            "ldm": per_stream.mean(),  # Eq. (7): both streams
            "ldm_input": per_stream[:batch].mean(),
            "ldm_condition": per_stream[batch:].mean(),
        }
        loss = terms["ldm"]
        if self.mse_weight or self.perceptual_weight:
            a_x, s_x = a[:batch], s[:batch]
            if self.v_prediction:
                z0_hat = a_x * z_t[:batch] - s_x * pred[:batch]
            else:
                z0_hat = (z_t[:batch] - s_x * pred[:batch]) / a_x  # Eq. (3)
            x0_hat = model.decode(z0_hat).float()
            terms["mse"] = F.mse_loss(x0_hat, hq)  # Eq. (8)
            loss = loss + self.mse_weight * terms["mse"]
            if self.perceptual_weight and self.vgg is not None:  # (the weight is 0 without a VGG)
                terms["perceptual"] = perceptual_loss(self.vgg, x0_hat, hq)
                loss = loss + self.perceptual_weight * terms["perceptual"]
        terms["loss"] = loss
        return terms


class DiffusionStage(Stage):
    """Restoration or degradation mode on the shared loop."""

    def __init__(self, config: DiffusionConfig, accelerator: Any, resume_dir: Path | None) -> None:
        self.config = config
        self.mode = config_mode(config)
        self.name = config.command
        section = config.diffusion
        out = Path(config.run.output_dir)
        base_dir = out / BASE_DIR
        if resume_dir is not None:
            model = read_base(base_dir)
        else:
            model = build_base(config.model, section, self.mode)
            if accelerator.is_main_process:
                write_base(model, out)
            accelerator.wait_for_everyone()
        self.base_digest = digest(base_dir)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.model.seed + 1)  # LoRA's A matrices
            make_trainable(model, section, self.mode)
        if section.init and resume_dir is None:
            self._load_init(model, Path(section.init))
        if config.run.gradient_checkpointing:
            model.unet.unet.enable_gradient_checkpointing()
            model.vae.enable_gradient_checkpointing()
        T = model.config.schedule.num_train_timesteps
        if section.t_cond_max > T:
            raise ValueError(
                f"{config.command}.t_cond_max: {section.t_cond_max} exceeds the schedule's {T} timesteps; "
                f"use 1..{T} or 0"
            )
        self.model = model

        vgg = None
        mse_weight = perceptual_weight = 0.0
        if isinstance(config, RestorationTrainConfig):  # self.mode is Mode.RESTORE
            mse_weight, perceptual_weight = config.diffusion.mse_weight, config.diffusion.perceptual_weight
            if perceptual_weight > 0:
                vgg = load_vgg19(config.perceptual.vgg19, config.perceptual.layers)
            else:
                log.warning("perceptual loss off (restoration.perceptual_weight = 0): L_rm = L_ldm + L_mse only")
        self.loss = DiffusionLoss(model, self.mode, mse_weight=mse_weight, perceptual_weight=perceptual_weight, vgg=vgg)
        self.terms = ("loss", "ldm", "ldm_input", "ldm_condition")
        if self.mode is Mode.RESTORE:
            self.terms += ("mse", "perceptual") if vgg is not None else ("mse",)
        encoder = None
        if config.model.sd_dir:
            encoder = CaptionEncoder(Path(config.model.sd_dir), model.config.text_tokens, section.text_cache_size)
        self.encoder = encoder
        self.prompts = PromptBank(model, self.mode, encoder)

    def _load_init(self, model: FlipNet, directory: Path) -> None:
        """Trainable weights of another diffusion checkpoint over the same base (e.g. degradation -> restoration)."""
        directory = resolve_checkpoint(directory, "--init")
        state = read_state(directory)
        init_base = (directory / state["extra"].get("base_model", f"../../{BASE_DIR}")).resolve()
        if not init_base.is_dir() or digest(init_base) != self.base_digest:
            raise CheckpointError(
                f"--init {directory}: trained over a different base model (UNet/VAE/prompts differ); "
                f"start both runs from the same --sd-dir or --config/--seed/--vae-checkpoint"
            )
        weights = read_weights(directory, "model")
        params = dict(model.named_parameters())
        shared = [k for k in weights if k in params and params[k].requires_grad and params[k].shape == weights[k].shape]
        if not shared:
            raise CheckpointError(
                f"--init {directory}: no trainable weight matches this run's (LoRA rank, unet_training)"
            )
        with torch.no_grad():
            for k in shared:
                params[k].copy_(weights[k])
        trainable = sum(1 for p in params.values() if p.requires_grad)
        log.info("--init %s: %d of %d trainable tensors loaded", directory, len(shared), trainable)

    def parts(self) -> list[TrainedPart]:
        return [TrainedPart("model", self.model, self.loss, self.config.optim.lr)]

    def bind(self, accelerator: Any, modules: dict[str, nn.Module]) -> None:
        super().bind(accelerator, modules)
        if self.encoder is not None:
            self.encoder.to(accelerator.device)

    def micro_step(self, batch: Batch, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        config, section = self.model.config, self.config.diffusion
        b, device = batch.hq.shape[0], batch.hq.device
        T = config.schedule.num_train_timesteps
        shape = (2 * b, config.latent_channels, config.latent_size, config.latent_size)
        t_y_max = section.t_cond_max or T
        t = torch.cat(
            [
                torch.randint(0, T, (b,), generator=generator),  # [t_x; t_y], independent
                torch.randint(0, t_y_max, (b,), generator=generator),
            ]
        )
        noise = torch.randn(shape, generator=generator)  # [eps_x; eps_y]
        drop_text = torch.rand(b, generator=generator) < section.text_drop
        keep_id = torch.rand(b, generator=generator) >= getattr(section, "id_drop", 1.0)
        keep_id = keep_id.to(device) & batch.face
        text = self.prompts(batch.caption, drop_text)
        terms = self.modules["model"](batch.hq, batch.lq, text, keep_id.float(), noise.to(device), t.to(device))
        self.accelerator.backward(terms["loss"])
        return {k: v.detach() for k, v in terms.items()}

    def extra_state(self) -> dict[str, Any]:
        section = self.config.diffusion
        return {
            "mode": self.mode.value,
            "base_model": f"../../{BASE_DIR}",
            "base_digest": self.base_digest,
            "lora_rank": section.lora_rank,
            "lora_alpha": section.lora_alpha,
            "unet_training": section.unet_training.value,
        }


def train_diffusion(
    config: DiffusionConfig,
    *,
    dataset: EpochDataset | None = None,
    resume: str | Path | None = None,
    accelerator: Any = None,
    progress: bool = True,
) -> RunResult:
    """``flipnet-train restoration`` / ``degradation``: build, then run the shared loop."""

    def data(stage: DiffusionStage) -> EpochDataset:
        make = face_dataset if stage.mode is Mode.RESTORE else degradation_dataset
        return make(config.data, stage.model.config.resolution, config.run.seed)

    build = functools.partial(DiffusionStage, config)
    return run_stage(config, build, data, dataset=dataset, resume=resume, accelerator=accelerator, progress=progress)
