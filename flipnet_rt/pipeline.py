"""Restoration and degradation over batches of RGB uint8 faces, on the torch backend.

restore: input = HQ latent generated from noise, condition = the LQ image's latent, context
``[restore prompt || id tokens of the LQ face]``, classifier-free guidance against
``[negative prompt || zeros]`` batched into the same UNet call (DESIGN §3).
degrade (the flip): input = LQ latent generated, condition = the HQ image's latent, context
``[empty prompt || zeros]``; both guidance branches would be identical, so guidance is skipped.

The UNet batch of one step is ``[x (branches x B); y_t (branches x B)]`` with timesteps
``[t; t_cond]``; the condition latent ``y_t`` is noised once by Eq. (1) at ``t_cond`` and stays
fixed over the steps. Each image draws its noise from its own seed, so a result depends on the
image and its seed, not on which other images share its batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .config import FlipnetConfig
from .images import fit, to_float, to_uint8, unfit
from .models.flipnet import FlipNet, Mode
from .sampling import (
    Grid,
    PredictionType,
    SamplerKind,
    ScheduleConfig,
    Spacing,
    make_grid,
    parameterized,
    q_sample,
    sample,
)


@dataclass(frozen=True)
class SamplingOptions:
    """What a restore or degrade call does; defaults come from the model's config."""

    sampler: SamplerKind = SamplerKind.DPMPP_2M
    steps: int = 20
    spacing: Spacing = Spacing.LEADING
    guidance: float = 1.5
    phi: float = 1.0
    t_cond: int = 0
    strength: float = 1.0  # 1.0: from pure noise; < 1: from the noised condition latent, fewer steps
    eta: float = 0.0  # DDIM only: 0 deterministic, 1 DDPM-like
    seed: int = 0

    def __post_init__(self) -> None:
        for name, enum in (("sampler", SamplerKind), ("spacing", Spacing)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                choices = ", ".join(e.value for e in enum)
                raise ValueError(f"{name}: {value!r} is not one of {choices}") from None

    @classmethod
    def from_config(cls, config: FlipnetConfig, **overrides: object) -> "SamplingOptions":
        d = config.defaults
        base = cls(
            sampler=SamplerKind(d.sampler), steps=d.steps, spacing=Spacing(d.spacing),
            guidance=d.guidance, phi=d.phi, t_cond=d.t_cond, eta=d.eta,
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(base, **given).validate(config)

    def validate(self, config: FlipnetConfig) -> "SamplingOptions":
        t_max = config.schedule.num_train_timesteps - 1
        if not 0 <= self.t_cond <= t_max:
            raise ValueError(f"t_cond: {self.t_cond} is outside [0, {t_max}]")
        if self.steps < 1:
            raise ValueError(f"steps: {self.steps}; use 1 or more")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength: {self.strength} is outside (0, 1]")
        if self.eta < 0:
            raise ValueError(f"eta: {self.eta} must be >= 0")
        if self.eta > 0 and self.sampler is not SamplerKind.DDIM:
            raise ValueError(f"eta: {self.eta} applies to the ddim sampler only; set sampler to ddim")
        return self


def image_seed(seed: int, index: int, variant: int = 0) -> int:
    """The seed of one image of a job: independent streams for each (seed, index, variant)."""
    return int(np.random.SeedSequence([seed, index, variant]).generate_state(1, np.uint64)[0] >> 1)


def schedule_config(config: FlipnetConfig) -> ScheduleConfig:
    s = config.schedule
    return ScheduleConfig(
        beta_start=s.beta_start, beta_end=s.beta_end, num_train_timesteps=s.num_train_timesteps,
        steps_offset=s.steps_offset, set_alpha_to_one=s.set_alpha_to_one,
        prediction_type=PredictionType(s.prediction_type),
    )


class TorchPipeline:
    """FLIPNET restore/degrade on PyTorch (eager). Not thread-safe: phi is set on the model."""

    def __init__(self, model: FlipNet, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.dtype = dtype
        self.schedule = schedule_config(model.config)
        self.alphas_cumprod = self.schedule.alphas_cumprod()

    @property
    def config(self) -> FlipnetConfig:
        return self.model.config

    def restore(
        self, images: Sequence[np.ndarray], options: SamplingOptions, seeds: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        """Restore LQ faces: each ``[H, W, 3]`` uint8 RGB -> restored ``[H, W, 3]`` uint8."""
        return self._run(images, Mode.RESTORE, options, seeds)

    def degrade(
        self, images: Sequence[np.ndarray], options: SamplingOptions, seeds: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        """Synthesise a real-world-like LQ version of each HQ face (degradation mode, Sec. 4.2)."""
        return self._run(images, Mode.DEGRADE, options, seeds)

    @torch.inference_mode()
    def _run(
        self, images: Sequence[np.ndarray], mode: Mode, options: SamplingOptions, seeds: Sequence[int] | None
    ) -> list[np.ndarray]:
        if not images:
            return []
        options.validate(self.config)
        seeds = list(seeds) if seeds is not None else [image_seed(options.seed, i) for i in range(len(images))]
        if len(seeds) != len(images):
            raise ValueError(f"seeds: {len(seeds)} given for {len(images)} images")
        fitted, placements = zip(*(fit(img, self.config.resolution) for img in images))
        pixels = torch.from_numpy(to_float(np.stack(fitted))).to(self.device, self.dtype)
        latents = self.generate(pixels, mode, options, seeds)
        decoded = self.model.decode(latents).float().cpu().numpy()
        return [unfit(img, placement) for img, placement in zip(to_uint8(decoded), placements)]

    def generate(
        self, pixels: torch.Tensor, mode: Mode, options: SamplingOptions, seeds: Sequence[int]
    ) -> torch.Tensor:
        """The sampling loop in latent space: condition images ``[B,3,R,R]`` -> latents ``[B,4,h,w]``."""
        model, batch = self.model, pixels.shape[0]
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        y0 = model.encode(pixels)
        noise_x, noise_y = self._noise(generators, y0), self._noise(generators, y0)
        y_t = q_sample(y0, noise_y, float(self.alphas_cumprod[options.t_cond]))  # Eq. (1) at t_cond

        if mode is Mode.RESTORE:
            context = model.context("restore", model.face(pixels), batch)
            guided = options.guidance != 1.0
            if guided:  # conditional and unconditional branches in one call
                context = torch.cat([context, model.context("negative", None, batch)])
        else:
            context = model.context("degrade", None, batch)
            guided = False  # both branches identical: computing them twice would change nothing
        branches = 2 if guided else 1
        condition = y_t.repeat(branches, 1, 1, 1)
        t_cond = torch.full((branches * batch,), options.t_cond, device=self.device, dtype=torch.long)
        contexts = torch.cat([context, context])
        phi = torch.tensor(options.phi, device=self.device, dtype=self.dtype)

        def network(x: torch.Tensor, t: int) -> torch.Tensor:
            x_in = x.repeat(branches, 1, 1, 1)
            t_in = torch.full_like(t_cond, t)
            out = model.unet(torch.cat([x_in, condition]), torch.cat([t_in, t_cond]), contexts, phi)
            out = out[: branches * batch]
            if not guided:
                return out
            cond, uncond = out.chunk(2)
            return uncond + options.guidance * (cond - uncond)

        grid = make_grid(self.schedule, options.sampler, options.steps, options.spacing, options.strength)
        x = self._start(grid, noise_x, y0, options)
        denoiser = parameterized(network, self.alphas_cumprod, self.schedule.prediction_type)
        noise_like = (lambda ref: self._noise(generators, ref)) if options.eta > 0 else None
        return sample(options.sampler, denoiser, x, grid, eta=options.eta, noise_like=noise_like)

    @staticmethod
    def _start(grid: Grid, noise: torch.Tensor, y0: torch.Tensor, options: SamplingOptions) -> torch.Tensor:
        """Pure noise, or with strength < 1 the condition latent noised to the first step's level."""
        if options.strength >= 1.0:
            return noise
        return q_sample(y0, noise, float(grid.alpha_bar[0]))

    def _noise(self, generators: list[torch.Generator], like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise ``like`` a batch, one generator per image (drawn on the CPU)."""
        shape = (1, *like.shape[1:])
        per_image = [torch.randn(shape, generator=g, dtype=torch.float32) for g in generators]
        return torch.cat(per_image).to(like.device, like.dtype)

