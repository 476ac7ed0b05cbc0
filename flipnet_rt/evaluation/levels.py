"""Named degradation levels, from none to the training degradation, and mixes of them.

``flipnet-rt eval --levels`` scores a model per level, the demo model trains on a mix
(:class:`LevelMix`, ``data.degradation_levels`` in a training config) and the fidelity estimator
learns from all of them. The ranges are for 512-px faces, like the paper's, and are scaled to
the face's size with :meth:`~flipnet_rt.evaluation.degradations.DegradationConfig.scaled_to` (so a level
means the same blur and downsampling relative to the face at 64 px and at 512 px):

=========  ======  =================  ============  ==========  ==========
level      passes  blur sigma (512)   downsample s  noise       JPEG q
=========  ======  =================  ============  ==========  ==========
none       --      --                 --            --          --
mild       1       0.1-6              0.8-12        0-5         70-95
moderate   1       0.1-10             0.8-20        0-10        40-90
heavy      1       0.1-15 (Eq. 9)     0.8-32        0-20        30-95
train      2       the paper's ranges in both passes (Sec. 5.1): the training degradation
=========  ======  =================  ============  ==========  ==========

At 64 px mild is a blur of at most 0.75 px and a downsample of at most 1.5x; at 150 px 1.8 px
and 3.5x.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from .degradations import DegradationConfig, DegradationParams, PassConfig, apply, sample_params


class Level(str, Enum):
    """A named degradation level (:data:`LEVEL_CONFIGS`)."""

    NONE = "none"
    MILD = "mild"
    MODERATE = "moderate"
    HEAVY = "heavy"
    TRAIN = "train"


#: Each level's ranges at 512 px (None: no degradation).
LEVEL_CONFIGS: dict[Level, DegradationConfig | None] = {
    Level.NONE: None,
    Level.MILD: DegradationConfig(
        first=PassConfig(sigma=(0.1, 6.0), scale=(0.8, 12.0), noise=(0.0, 5.0), quality=(70, 95)), passes=1
    ),
    Level.MODERATE: DegradationConfig(
        first=PassConfig(sigma=(0.1, 10.0), scale=(0.8, 20.0), noise=(0.0, 10.0), quality=(40, 90)), passes=1
    ),
    Level.HEAVY: DegradationConfig(passes=1),
    Level.TRAIN: DegradationConfig(),
}


def parse_levels(text: str) -> list[Level]:
    """``"none,mild,train"`` -> levels, in the order given; a bad name is a ValueError naming the choices."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError(f"--levels {text!r}: give one or more of {', '.join(lv.value for lv in Level)}")
    out = []
    for name in names:
        try:
            out.append(Level(name))
        except ValueError:
            raise ValueError(f"--levels: {name!r} is not a level; use {', '.join(lv.value for lv in Level)}") from None
    return out


@dataclass(frozen=True)
class LeveledParams:
    """The recorded choice of one LQ: its level and (None for ``none``) its degradation params."""

    level: Level
    params: DegradationParams | None

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level.value, **(self.params.to_dict() if self.params is not None else {})}


class LevelDegradation:
    """``(image, seed) -> (lq, LeveledParams)`` at one level, its ranges scaled to the image's size."""

    def __init__(self, level: Level | str) -> None:
        self.level = Level(level)

    def __call__(self, image: np.ndarray, seed: int) -> tuple[np.ndarray, LeveledParams]:
        base = LEVEL_CONFIGS[self.level]
        if base is None:
            return image.copy(), LeveledParams(self.level, None)
        params = sample_params(np.random.default_rng(seed), base.scaled_to(int(image.shape[0])))
        return apply(image, params), LeveledParams(self.level, params)

    def __repr__(self) -> str:
        return f"LevelDegradation({self.level.value!r})"


def _scaled(config: DegradationConfig | None, resolution: int | None) -> DegradationConfig | None:
    """``config`` scaled to ``resolution`` (None: no degradation, or scaled per image)."""
    return None if config is None or resolution is None else config.scaled_to(resolution)


class LevelMix:
    """``(image, seed) -> (lq, LeveledParams)``: a level drawn by ``weights``, then its degradation.

    Args:
        weights: ``{level name: weight}`` (non-negative, not all zero; normalised here).
        resolution: the side the ranges are scaled to (None: each image's own height).
    """

    def __init__(self, weights: Mapping[str, float], resolution: int | None = None) -> None:
        if not weights:
            raise ValueError("degradation_levels: give at least one level with a weight")
        levels, values = [], []
        for name, w in weights.items():
            try:
                levels.append(Level(name))
            except ValueError:
                raise ValueError(
                    f"degradation_levels: {name!r} is not a level; use {', '.join(lv.value for lv in Level)}"
                ) from None
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
                raise ValueError(f"degradation_levels.{name}: {w!r}; use a weight >= 0")
            values.append(float(w))
        total = sum(values)
        if total <= 0:
            raise ValueError("degradation_levels: every weight is 0; give one a positive weight")
        self.levels = tuple(levels)
        self.cumulative = np.cumsum(values) / total
        self.resolution = resolution
        self._configs = {lv: _scaled(LEVEL_CONFIGS[lv], resolution) for lv in self.levels}

    def __call__(self, image: np.ndarray, seed: int) -> tuple[np.ndarray, LeveledParams]:
        rng = np.random.default_rng(seed)
        level = self.levels[
            min(int(np.searchsorted(self.cumulative, rng.random(), side="right")), len(self.levels) - 1)
        ]
        base = LEVEL_CONFIGS[level]
        if base is None:
            return image.copy(), LeveledParams(level, None)
        config = self._configs[level] or base.scaled_to(int(image.shape[0]))
        params = sample_params(rng, config)
        return apply(image, params), LeveledParams(level, params)

    def __repr__(self) -> str:
        shares = np.diff(np.concatenate([[0.0], self.cumulative]))
        return "LevelMix({" + ", ".join(f"{lv.value!r}: {p:.3g}" for lv, p in zip(self.levels, shares)) + "})"
