"""Helpers of the faces tests (plain functions and the identity restorer; fixtures live in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from helpers import require  # noqa: F401 (the tests import it from here)

from flipnet_rt.imaging.scene import ASTRONAUT_LANDMARKS  # noqa: F401 (tests import it from here)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
DEMO_ENGINE = ROOT / "models" / "demo-onnx"


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


@dataclass
class _Config:
    resolution: int


class ShiftRestorer:
    """The issue's identity restorer (``offset`` 0): the restored face is its aligned input, plus
    ``offset`` grey levels for the seam test. Same call shape as ``Restorer.restore``."""

    has_fidelity = False  # no estimator: --fidelity auto keeps the restoration

    def __init__(self, resolution: int = 64, offset: int = 0) -> None:
        self.config = _Config(resolution)
        self.offset = offset
        self.calls: list[int] = []

    def options(self, **overrides):
        return None

    def restore(self, images, options=None, seeds=None):
        from flipnet_rt.imaging.geometry import fit, unfit

        self.calls.append(len(images))
        out = []
        for im in images:  # the core's size policy: to R and back
            square, placement = fit(im, self.config.resolution)
            out.append(unfit(np.clip(square.astype(np.int16) + self.offset, 0, 255).astype(np.uint8), placement))
        return out
