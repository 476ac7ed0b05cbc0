"""The sampling package's documented contracts at their edges: schedule bounds, Grid storage, error
messages, and when DDIM draws noise (issue 19: each test kills mutants that survived the others)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flipnet_rt.sampling import (
    Grid,
    Prediction,
    PredictionType,
    SamplerKind,
    ScheduleConfig,
    Spacing,
    ddim_step,
    dpmpp_2m_step,
    make_grid,
    parameterized,
    q_sample,
    sample_ddim,
)

CFG = ScheduleConfig()


def message(fn, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as exc:
        fn(*args, **kwargs)
    return str(exc.value)


def test_schedule_bounds():
    assert len(ScheduleConfig(num_train_timesteps=2).alphas_cumprod()) == 2  # the smallest allowed
    assert message(ScheduleConfig, num_train_timesteps=1) == "num_train_timesteps=1; use at least 2"
    for start, end in ((0.0, 0.012), (0.01, 0.01), (0.001, 1.0), (0.001, 1.5), (0.02, 0.01)):
        assert message(ScheduleConfig, beta_start=start, beta_end=end) == (
            f"beta_start={start}, beta_end={end}; need 0 < beta_start < beta_end < 1"
        )
    assert ScheduleConfig(beta_start=1e-6, beta_end=0.999).alphas_cumprod()[-1] > 0


@pytest.mark.parametrize("lengths", [(0, 0, 0), (2, 2, 1), (2, 1, 2), (1, 2, 2)])
def test_grid_refuses_any_length_mismatch_and_an_empty_grid(lengths):
    n, m, k = lengths
    got = message(Grid, timesteps=np.arange(n)[::-1], alpha_bar=np.full(m, 0.5), alpha_bar_next=np.ones(k))
    assert got == (f"Grid needs equal, non-zero lengths of timesteps, alpha_bar and alpha_bar_next; got {n}, {m}, {k}")


def test_grid_holds_read_only_int64_and_float64_copies():
    """The docstring's types, whatever the caller passed, and later edits of the inputs do not leak in."""
    ts, ab, abn = np.array([7, 3], np.int32), np.array([0.25, 0.5], np.float32), np.array([0.5, 1.0], np.float32)
    grid = Grid(timesteps=ts, alpha_bar=ab, alpha_bar_next=abn)
    assert (grid.timesteps.dtype, grid.alpha_bar.dtype, grid.alpha_bar_next.dtype) == (np.int64, np.float64, np.float64)
    ts[0], ab[0], abn[0] = 9, 0.75, 0.75
    assert grid.timesteps.tolist() == [7, 3]
    assert grid.alpha_bar.tolist() == [0.25, 0.5] and grid.alpha_bar_next.tolist() == [0.5, 1.0]
    for a in (grid.timesteps, grid.alpha_bar, grid.alpha_bar_next):
        assert not a.flags.writeable
    assert vars(grid).keys() == {"timesteps", "alpha_bar", "alpha_bar_next"}


def test_make_grid_messages():
    with pytest.raises(TypeError) as exc:
        make_grid(CFG, SamplerKind.DDIM, 10.0, Spacing.LEADING)  # type: ignore[arg-type]
    assert str(exc.value) == "num_steps must be an int, got float"
    assert message(make_grid, CFG, SamplerKind.DDIM, 10, Spacing.LEADING, strength=0.0) == (
        "strength=0.0; use 0 < strength <= 1 (1 is a full run from noise)"
    )


def test_repeated_timesteps_are_refused():
    """DPM-Solver++ places n + 1 points: 1000 linspace steps over 1000 training steps round to
    repeated timesteps (every point still inside [0, T)); diffusers would run a step twice."""
    ts = np.linspace(0, CFG.num_train_timesteps - 1, 1001).round()[::-1][:-1]
    assert np.any(np.diff(ts) == 0) and ts.min() >= 0 and ts.max() < CFG.num_train_timesteps
    assert message(make_grid, CFG, SamplerKind.DPMPP_2M, 1000, Spacing.LINSPACE) == (
        "num_steps=1000 with spacing='linspace' gives repeated or out-of-range timesteps for dpmpp-2m; use fewer steps"
    )
    assert len(make_grid(CFG, SamplerKind.DDIM, 1000, Spacing.LINSPACE)) == 1000  # unique there


def test_q_sample_refuses_alpha_bar_above_one():
    x = np.ones((1, 1, 2, 2))
    assert message(q_sample, x, x, 1.5) == "alpha_bar=1.5; use 0 < alpha_bar <= 1 (an alphas_cumprod value)"


def test_parameterized_reads_float32_alphas_in_float64():
    """An alphas_cumprod handed over as float32 (as diffusers stores it): the coefficients are still
    the float64 square roots of those values, as the module's float64 contract says."""
    ac32 = CFG.alphas_cumprod().astype(np.float32)
    den = parameterized(lambda x, t: np.zeros_like(x), ac32, PredictionType.EPSILON)
    x = np.ones((1, 1, 1, 1))
    for t in (0, 500, 999):
        assert den(x, t).x0.item() == 1.0 / math.sqrt(float(ac32[t]))


def test_ddim_step_is_deterministic_by_default():
    """eta defaults to 0: Song et al. Eq. (12) with no noise term, and no noise needed."""
    rng = np.random.default_rng(0)
    pred = Prediction(x0=rng.standard_normal((1, 2, 3, 3)), eps=rng.standard_normal((1, 2, 3, 3)))
    got = ddim_step(np.zeros((1, 2, 3, 3)), pred, 0.3, 0.6)
    np.testing.assert_allclose(got, math.sqrt(0.6) * pred.x0 + math.sqrt(0.4) * pred.eps, rtol=1e-15)


def test_sampler_messages():
    x = np.zeros((1, 1, 2, 2))
    assert message(dpmpp_2m_step, x, Prediction(x0=x, eps=x), 0.3, 0.5, x0_prev=x) == (
        "dpmpp_2m_step: pass both x0_prev and alpha_bar_prev, or neither"
    )
    grid = make_grid(CFG, SamplerKind.DDIM, 4, Spacing.LEADING)
    assert message(sample_ddim, lambda x, t: Prediction(x0=x, eps=x), x, grid, eta=0.5) == (
        "eta=0.5 > 0 needs noise_like, e.g. noise_like=torch.randn_like or "
        "noise_like=lambda x: rng.standard_normal(x.shape, dtype=x.dtype)"
    )


@pytest.mark.parametrize("eta, draws", [(0.0, 0), (0.5, 4)])
def test_ddim_draws_noise_only_when_eta_is_positive(eta, draws):
    """The docstring: eta > 0 draws ``noise_like(x)`` once per step; eta 0 draws none, so a noise
    stream shared with other draws (a seeded generator) is not advanced by deterministic DDIM."""
    calls = []

    def noise_like(x):
        calls.append(1)
        return np.zeros_like(x)

    grid = make_grid(CFG, SamplerKind.DDIM, 4, Spacing.LEADING)
    sample_ddim(lambda x, t: Prediction(x0=0.5 * x, eps=x), np.ones((1, 1, 2, 2)), grid, eta=eta, noise_like=noise_like)
    assert len(calls) == draws
