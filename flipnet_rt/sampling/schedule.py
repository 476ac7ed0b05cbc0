"""Noise schedule and per-sampler timestep grids, reproducing diffusers' conventions.

Pure numpy float64, no torch: the grid is computed once per (sampler, steps, spacing,
strength) and the samplers read plain Python floats from it, so one update is
``a * x + b * y`` on numpy arrays or torch tensors alike.

Notation (variance-preserving, paper Eq. (1)): ``z_t = sqrt(ab_t) z_0 + sqrt(1 - ab_t) eps``
with ``ab_t = alphas_cumprod[t]``. The k-diffusion view of the same point is
``x_k = z_t / sqrt(ab_t)`` at noise level ``sigma_t = sqrt((1 - ab_t) / ab_t)``.

Where the grids differ from diffusers 0.42 (``scheduling_ddim.py``,
``scheduling_dpmsolver_multistep.py``, ``scheduling_euler_discrete.py``, ``set_timesteps``):

* Euler with ``Spacing.LINSPACE``: diffusers uses non-integer timesteps (e.g. 945.05) and
  interpolates sigma between training steps; we round them to integers so that the network
  always sees a training timestep. This one case does not match diffusers.
* ``Spacing.TRAILING`` for some step counts (61, 103, 121, ... of 1000): diffusers'
  ``np.arange(T, 0, -T / n)`` yields ``n + 1`` points through float round-off, the last one
  being timestep -1. We keep the first ``n``, which are diffusers' timesteps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "Grid",
    "PredictionType",
    "SamplerKind",
    "ScheduleConfig",
    "Spacing",
    "make_grid",
    "q_sample",
]


class Spacing(str, Enum):
    """How inference timesteps are spread over the training steps (Lin et al. 2023, Table 2)."""

    LEADING = "leading"
    TRAILING = "trailing"
    LINSPACE = "linspace"


class SamplerKind(str, Enum):
    """The sampling algorithm; each has its own timestep convention in diffusers."""

    DDIM = "ddim"
    DPMPP_2M = "dpmpp-2m"
    EULER = "euler"


class PredictionType(str, Enum):
    """What the network predicts: the noise ``eps`` or the velocity ``v = sqrt(ab) eps - sqrt(1-ab) z0``."""

    EPSILON = "epsilon"
    V_PREDICTION = "v_prediction"


@dataclass(frozen=True)
class ScheduleConfig:
    """The training noise schedule (scaled-linear betas, Stable Diffusion 2.1-base values).

    ``steps_offset`` shifts leading-spaced grids (diffusers' ``steps_offset``);
    ``set_alpha_to_one`` picks DDIM's final alpha_bar (1.0, or ``alphas_cumprod[0]`` when False).
    """

    beta_start: float = 0.00085
    beta_end: float = 0.012
    num_train_timesteps: int = 1000
    steps_offset: int = 1
    set_alpha_to_one: bool = False
    prediction_type: PredictionType = PredictionType.EPSILON

    def __post_init__(self) -> None:
        if self.num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps={self.num_train_timesteps}; use at least 2")
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ValueError(
                f"beta_start={self.beta_start}, beta_end={self.beta_end}; need 0 < beta_start < beta_end < 1"
            )
        # Accept the plain string too ("epsilon"), as read from a JSON config.
        object.__setattr__(self, "prediction_type", as_choice(PredictionType, "prediction_type", self.prediction_type))

    def alphas_cumprod(self) -> np.ndarray:
        """``alpha_bar_t`` for t = 0..T-1, [T] float64: scaled-linear betas, cumprod(1 - beta)."""
        betas = (
            np.linspace(
                math.sqrt(self.beta_start),
                math.sqrt(self.beta_end),
                self.num_train_timesteps,
                dtype=np.float64,
            )
            ** 2
        )
        return np.cumprod(1.0 - betas)


E = TypeVar("E", bound=Enum)


def as_choice(enum: type[E], name: str, value: object) -> E:
    """``enum(value)``; the error names the field and lists the choices (a config's or option's check)."""
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(e.value for e in enum)
        raise ValueError(f"{name}: {value!r} is not one of {choices}") from None


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a)  # own copy
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)  # arrays: identity equality, hashable
class Grid:
    """A sampling grid: what the network sees at step i and where step i moves to.

    Attributes:
        timesteps: [n] int64, strictly descending; the ``t`` given to the network at step i.
        alpha_bar: [n] float64, ``alphas_cumprod[timesteps[i]]``, the noise level of the input.
        alpha_bar_next: [n] float64, the noise level step i moves to; 1.0 is the clean end (sigma 0).
    """

    timesteps: np.ndarray
    alpha_bar: np.ndarray
    alpha_bar_next: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.timesteps)
        if n == 0 or len(self.alpha_bar) != n or len(self.alpha_bar_next) != n:
            raise ValueError(
                "Grid needs equal, non-zero lengths of timesteps, alpha_bar and alpha_bar_next; "
                f"got {len(self.timesteps)}, {len(self.alpha_bar)}, {len(self.alpha_bar_next)}"
            )
        object.__setattr__(self, "timesteps", _readonly(np.asarray(self.timesteps, np.int64)))
        object.__setattr__(self, "alpha_bar", _readonly(np.asarray(self.alpha_bar, np.float64)))
        object.__setattr__(self, "alpha_bar_next", _readonly(np.asarray(self.alpha_bar_next, np.float64)))

    def __len__(self) -> int:
        return len(self.timesteps)

    @property
    def init_alpha_bar(self) -> float:
        """Noise level of the sampler's input: img2img starts from ``q_sample(x0, eps, this)``."""
        return float(self.alpha_bar[0])


def _ddim_timesteps(n: int, T: int, spacing: Spacing, offset: int) -> np.ndarray:
    """``DDIMScheduler.set_timesteps`` (also ``EulerDiscreteScheduler``'s, rounded)."""
    if spacing is Spacing.LINSPACE:
        return np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)
    if spacing is Spacing.LEADING:
        ratio = T // n
        return (np.arange(0, n) * ratio).round()[::-1].astype(np.int64) + offset
    stride = T / n  # TRAILING; [:n] drops the round-off point at -1, see module docstring
    return np.round(np.arange(T, 0, -stride)).astype(np.int64)[:n] - 1


def _dpm_timesteps(n: int, T: int, spacing: Spacing, offset: int) -> np.ndarray:
    """``DPMSolverMultistepScheduler.set_timesteps``: n + 1 points, the last (t = 0) dropped."""
    if spacing is Spacing.LINSPACE:
        return np.linspace(0, T - 1, n + 1).round()[::-1][:-1].astype(np.int64)
    if spacing is Spacing.LEADING:
        ratio = T // (n + 1)
        return (np.arange(0, n + 1) * ratio).round()[::-1][:-1].astype(np.int64) + offset
    stride = T / n  # TRAILING
    return np.arange(T, 0, -stride).round().astype(np.int64)[:n] - 1


def make_grid(
    config: ScheduleConfig,
    sampler: SamplerKind,
    num_steps: int,
    spacing: Spacing,
    strength: float = 1.0,
) -> Grid:
    """Timesteps and noise levels of one sampling run, as diffusers' scheduler would use them.

    Args:
        config: the training schedule.
        sampler: whose timestep convention to follow.
        num_steps: inference steps of a full (strength 1) run, 1..num_train_timesteps.
        spacing: leading, trailing or linspace.
        strength: img2img strength in (0, 1], as ``StableDiffusionImg2ImgPipeline.get_timesteps``:
            the run keeps the last ``min(int(num_steps * strength), num_steps)`` steps.

    Returns:
        A Grid of ``int(num_steps * strength)`` steps.

    DDIM's ``alpha_bar_next[i]`` follows ``DDIMScheduler.step``: ``alphas_cumprod[t_i - T // n]``,
    or the final alpha (1.0 if ``set_alpha_to_one`` else ``alphas_cumprod[0]``) when that index
    is negative. For trailing and linspace grids this is not always the next grid element; we
    keep diffusers' rule so that results match it. DPM-Solver++ and Euler end at sigma 0
    (``final_sigmas_type="zero"``): ``alpha_bar_next[i] = alpha_bar[i + 1]``, last 1.0.
    """
    sampler, spacing = SamplerKind(sampler), Spacing(spacing)
    T = config.num_train_timesteps
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
        raise TypeError(f"num_steps must be an int, got {type(num_steps).__name__}")
    if not 1 <= num_steps <= T:
        raise ValueError(f"num_steps={num_steps}; use 1 <= num_steps <= {T} (num_train_timesteps)")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength={strength}; use 0 < strength <= 1 (1 is a full run from noise)")
    init = min(int(num_steps * strength), num_steps)
    if init < 1:
        raise ValueError(
            f"strength={strength} leaves no step of num_steps={num_steps}; "
            f"use strength >= {1.0 / num_steps:.4g} (1 / num_steps) or more steps"
        )

    ac = config.alphas_cumprod()
    if sampler is SamplerKind.DPMPP_2M:
        ts = _dpm_timesteps(num_steps, T, spacing, config.steps_offset)
    else:
        ts = _ddim_timesteps(num_steps, T, spacing, config.steps_offset)
    if len(ts) != num_steps or np.any(np.diff(ts) >= 0) or ts.min() < 0 or ts.max() >= T:
        raise ValueError(
            f"num_steps={num_steps} with spacing={spacing.value!r} gives repeated or out-of-range "
            f"timesteps for {sampler.value}; use fewer steps"
        )
    ab = ac[ts]
    if sampler is SamplerKind.DDIM:
        final = 1.0 if config.set_alpha_to_one else float(ac[0])
        prev = ts - T // num_steps
        ab_next = np.where(prev >= 0, ac[np.maximum(prev, 0)], final)
    else:
        ab_next = np.append(ab[1:], 1.0)

    start = num_steps - init
    return Grid(timesteps=ts[start:], alpha_bar=ab[start:], alpha_bar_next=ab_next[start:])


def q_sample(x0: Any, noise: Any, alpha_bar: float) -> Any:
    """Eq. (1): ``z_t = sqrt(ab) z0 + sqrt(1 - ab) eps``; x0, noise [B, C, H, W], numpy or torch."""
    alpha_bar = float(alpha_bar)
    if not 0.0 < alpha_bar <= 1.0:
        raise ValueError(f"alpha_bar={alpha_bar}; use 0 < alpha_bar <= 1 (an alphas_cumprod value)")
    return math.sqrt(alpha_bar) * x0 + math.sqrt(1.0 - alpha_bar) * noise
