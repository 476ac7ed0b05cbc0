"""Sampling options and modes, shared by every backend (torch-free)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from .config import FlipnetConfig
from .sampling import PredictionType, SamplerKind, ScheduleConfig, Spacing


class Mode(str, Enum):
    """Which image the UNet generates (DESIGN §1). Flipping the mode swaps the two streams."""

    RESTORE = "restore"  # input = HQ latent (generated), condition = LQ latent
    DEGRADE = "degrade"  # input = LQ latent (generated), condition = HQ latent


#: Largest seed: a signed 64-bit integer (the served models' ``seed`` input is int64).
MAX_SEED = 2**63 - 1
#: Deepest wavelet colour fix: its low band is then ~1024 px wide, beyond any model resolution.
MAX_COLOR_FIX_LEVELS = 10


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
    color_fix: int = 0  # restore mode: wavelet colour fix levels (0 off; images.wavelet_color_fix)
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
            guidance=d.guidance, phi=d.phi, t_cond=d.t_cond, eta=d.eta, strength=d.strength,
            color_fix=d.color_fix,
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(base, **given).validate(config)

    def validate(self, config: FlipnetConfig) -> "SamplingOptions":
        for name in ("guidance", "phi", "strength", "eta"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name}: {getattr(self, name)} is not a finite number")
        t_max = config.schedule.num_train_timesteps - 1
        if not 0 <= self.t_cond <= t_max:
            raise ValueError(f"t_cond: {self.t_cond} is outside [0, {t_max}]")
        if self.steps < 1:
            raise ValueError(f"steps: {self.steps}; use 1 or more")
        if self.steps > t_max + 1:
            raise ValueError(f"steps: {self.steps}; use 1 to {t_max + 1} (the model's num_train_timesteps)")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed: {self.seed} is outside [0, {MAX_SEED}]")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength: {self.strength} is outside (0, 1]")
        if self.eta < 0:
            raise ValueError(f"eta: {self.eta} must be >= 0")
        if not 0 <= self.color_fix <= MAX_COLOR_FIX_LEVELS:
            raise ValueError(f"color_fix: {self.color_fix} levels is outside [0, {MAX_COLOR_FIX_LEVELS}]; 0 turns it off")
        if self.eta > 0 and self.sampler is not SamplerKind.DDIM:
            raise ValueError(f"eta: {self.eta} applies to the ddim sampler only; set sampler to ddim")
        return self


def image_seed(seed: int, index: int, variant: int = 0) -> int:
    """The seed of one image of a job: independent streams for each (seed, index, variant)."""
    # int first: numpy 1.x cannot shift a uint64 by a Python int (no safe common type)
    return int(np.random.SeedSequence([seed, index, variant]).generate_state(1, np.uint64)[0]) >> 1


def schedule_config(config: FlipnetConfig) -> ScheduleConfig:
    s = config.schedule
    return ScheduleConfig(
        beta_start=s.beta_start, beta_end=s.beta_end, num_train_timesteps=s.num_train_timesteps,
        steps_offset=s.steps_offset, set_alpha_to_one=s.set_alpha_to_one,
        prediction_type=PredictionType(s.prediction_type),
    )
