"""pytest-benchmark suites (``make bench``; not part of ``make test``).

Compare within one run only: this machine is noisy, so report ratios, not absolute times.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flipnet_rt.imaging.geometry import fit
from flipnet_rt.imaging.tensor import to_float, to_uint8
from flipnet_rt.sampling import Prediction, SamplerKind, ScheduleConfig, Spacing, dpmpp_2m_step, make_grid

SHAPE = (1, 4, 64, 64)  # one 512x512 image's latent


@pytest.fixture(scope="module")
def grid():
    return make_grid(ScheduleConfig(), SamplerKind.DPMPP_2M, 20, Spacing.LEADING)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_dpmpp_update(benchmark, grid, backend):
    """One DPM-Solver++(2M) update on a 512x512 latent (the per-step sampler cost)."""
    rng = np.random.default_rng(0)
    x, x0, x0_prev = (rng.standard_normal(SHAPE, dtype=np.float32) for _ in range(3))
    if backend == "torch":
        x, x0, x0_prev = (torch.from_numpy(a) for a in (x, x0, x0_prev))
    pred = Prediction(x0=x0, eps=x0)
    ab = grid.alpha_bar
    benchmark(dpmpp_2m_step, x, pred, float(ab[5]), float(ab[6]), x0_prev, float(ab[4]))


def test_preprocess_512(benchmark):
    image = (np.random.default_rng(0).random((600, 450, 3)) * 255).astype(np.uint8)
    benchmark(lambda: to_float(fit(image, 512)[0][None]))


def test_postprocess_512(benchmark):
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 512, 512)).astype(np.float32)
    benchmark(to_uint8, x)
