"""Throughput of the full two-pass on-the-fly degradation (Eq. 9 + shuffled second pass), in images/s.

``make bench``. One round degrades the same fixed batch of generated images, each with its own
fixed seed, so every round averages the same parameter draws (cost depends on the draw: kernel
size grows with sigma). images/s = IMAGES / mean round time, stored in ``extra_info``. At 512 the
paper's ranges are used; at 64 the ranges scaled by ``DegradationConfig.scaled_to(64)``, which is
what 64x64 training uses. Params are sampled inside the timed call, as in a data loader.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import face_like

from flipnet_rt.evaluation.degradations import DegradationConfig, RandomDegradation

IMAGES = 16


@pytest.mark.parametrize("resolution", [512, 64])
def test_degradation_throughput(benchmark, resolution):
    degrade = RandomDegradation(DegradationConfig().scaled_to(resolution))
    images = [face_like(resolution, seed) for seed in range(IMAGES)]

    def run() -> list[np.ndarray]:
        return [degrade(image, seed)[0] for seed, image in enumerate(images)]

    outputs = benchmark.pedantic(run, rounds=5 if resolution == 512 else 20, warmup_rounds=1)
    assert all(out.shape == (resolution, resolution, 3) for out in outputs)
    benchmark.extra_info["images_per_round"] = IMAGES
    benchmark.extra_info["images_per_s"] = IMAGES / benchmark.stats.stats.mean
