"""Per-face fidelity: how much of the input face the output keeps (``--fidelity W|auto``).

Each restored face is blended with its own input in the aligned crop, after the colour fix and
before paste-back::

    out = W * input + (1 - W) * restored        W in [0, 1]

W = 0 is the model's output bit for bit, W = 1 the input crop bit for bit (so the paste, its
masks and the pixels outside them are exactly what they are without the blend). With keep-detail
(faces larger than the model) the restored crop is already ``input + up(restored_R - input_R)``,
so the blend scales only the band the model replaced.

``auto`` (the default) asks the model's fidelity estimator (:mod:`flipnet_rt.models.fidelity`,
the engine's ``fidelity`` network, run by the restorer's backend on the batch of faces at the
model's resolution) for each face's W from its input and its restoration. A model without one
keeps the restoration (W = 0) and says so once in the log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

AUTO = "auto"


def parse_fidelity(value: str | float) -> float | str:
    """``"auto"`` or a weight in [0, 1] (a number or its text) -> ``"auto"`` or the float.

    Raises ValueError in one line naming the value and the fix.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"fidelity: {value!r}; use a weight in [0, 1] (1 keeps the input face) or auto") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"fidelity: {value!r}; use a weight in [0, 1] (1 keeps the input face) or auto")
    else:
        number = float(value)
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ValueError(
            f"fidelity: {value!r} is outside [0, 1]; use a weight in [0, 1] (1 keeps the input face) or auto"
        )
    return number


def blend(face: np.ndarray, restored: np.ndarray, weight: float) -> np.ndarray:
    """``uint8 [S, S, 3]`` input crop and restoration -> ``W * face + (1 - W) * restored`` (uint8,
    rounded half to even). W = 0 returns ``restored`` itself, W = 1 a copy of ``face``."""
    if face.shape != restored.shape:
        raise ValueError(f"blend: input {face.shape} and restoration {restored.shape} differ")
    if weight <= 0.0:
        return restored
    if weight >= 1.0:
        return face.copy()
    w = np.float32(weight)
    mixed = w * face.astype(np.float32) + (np.float32(1.0) - w) * restored.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


class Estimates(Protocol):
    """What :class:`FidelityChooser` needs of a restorer for ``auto``: :class:`flipnet_rt.runtime.restorer.Restorer`."""

    @property
    def has_fidelity(self) -> bool: ...

    def fidelity(self, inputs: Sequence[np.ndarray], restored: Sequence[np.ndarray]) -> np.ndarray: ...


@dataclass(frozen=True)
class Weights:
    """Each face's W and where it came from: ``fixed`` (a number), ``estimator`` or ``none`` (auto
    without an estimator: W = 0)."""

    values: list[float]
    source: str


class FidelityChooser:
    """The W of each face of a batch, by the ``fidelity`` setting (``"auto"`` or a number)."""

    def __init__(self, restorer: Estimates, fidelity: float | str = AUTO) -> None:
        self.restorer = restorer
        self.fidelity = parse_fidelity(fidelity)
        self.estimates = self.fidelity == AUTO and bool(restorer.has_fidelity)
        if self.fidelity == AUTO and not self.estimates:
            log.warning(
                "fidelity auto: the model has no fidelity estimator (its engine has no `fidelity` network); "
                "faces keep the restoration (fidelity 0). Train one with `flipnet-train fidelity`"
            )

    @property
    def blends(self) -> bool:
        """False when every W is 0 (nothing to blend)."""
        return self.estimates or self.fidelity not in (AUTO, 0.0)

    def weights(self, inputs: Sequence[np.ndarray], restored: Sequence[np.ndarray]) -> Weights:
        """``inputs``/``restored``: ``uint8 [R, R, 3]`` model inputs and restorations (after the colour fix)."""
        if self.estimates:
            values = self.restorer.fidelity(list(inputs), list(restored))
            return Weights([float(v) for v in values], "estimator")
        if self.fidelity == AUTO:
            return Weights([0.0] * len(inputs), "none")
        return Weights([float(self.fidelity)] * len(inputs), "fixed")
