"""Sampling options and modes, shared by every backend (torch-free)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from ..sampling import SamplerKind, ScheduleConfig
from .model import Defaults, FlipnetConfig


class Mode(str, Enum):
    """Which image the UNet generates (DESIGN §1). Flipping the mode swaps the two streams."""

    RESTORE = "restore"  # input = HQ latent (generated), condition = LQ latent
    DEGRADE = "degrade"  # input = LQ latent (generated), condition = HQ latent


#: Largest seed: a signed 64-bit integer (the served models' ``seed`` input is int64).
MAX_SEED = 2**63 - 1
#: Deepest wavelet colour fix: its low band is then ~1024 px wide, beyond any model resolution.
MAX_COLOR_FIX_LEVELS = 10


@dataclass(frozen=True)
class SamplingOptions(Defaults):
    """What a restore or degrade call does: the model's sampler ``Defaults`` (their fields and enums
    are defined there once) plus the per-call seed; ``from_config`` takes the model's values and
    :meth:`validate` checks them against the model."""

    seed: int = 0

    @classmethod
    def from_config(cls, config: FlipnetConfig, **overrides: object) -> SamplingOptions:
        d = config.defaults
        base = cls(**{f.name: getattr(d, f.name) for f in dataclasses.fields(d)})
        given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}  # replace checks names
        return dataclasses.replace(base, **given).validate(config)

    def validate(self, config: FlipnetConfig) -> SamplingOptions:
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
            raise ValueError(
                f"color_fix: {self.color_fix} levels is outside [0, {MAX_COLOR_FIX_LEVELS}]; 0 turns it off"
            )
        if self.eta > 0 and self.sampler is not SamplerKind.DDIM:
            raise ValueError(f"eta: {self.eta} applies to the ddim sampler only; set sampler to ddim")
        return self


def image_seed(seed: int, index: int, variant: int = 0) -> int:
    """The seed of one image of a job: independent streams for each (seed, index, variant)."""
    # int first: numpy 1.x cannot shift a uint64 by a Python int (no safe common type)
    return int(np.random.SeedSequence([seed, index, variant]).generate_state(1, np.uint64)[0]) >> 1


def key_seed(seed: int, key: str, variant: int = 0) -> int:
    """The seed of the image named ``key`` (its output's path relative to the output folder, POSIX
    separators, e.g. ``"sub/a.png"``) in a job with base ``seed``: independent streams for each
    (seed, key, variant), whatever else the job holds, however it is batched and wherever it runs
    (``restore``, ``degrade`` and ``cluster`` all use it, issue 30)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
    entropy = [seed, variant, int.from_bytes(digest, "little")]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1


def schedule_config(config: FlipnetConfig) -> ScheduleConfig:
    """The model's training schedule (``ScheduleSpec`` is ``ScheduleConfig``: one definition)."""
    return config.schedule
