"""Noise schedule and timestep grids: values, invariants, strength truncation, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipnet_rt.sampling import (
    Grid,
    PredictionType,
    SamplerKind,
    ScheduleConfig,
    Spacing,
    make_grid,
    q_sample,
)

CFG = ScheduleConfig()
T = CFG.num_train_timesteps


def test_alphas_cumprod_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")
    ref = (
        diffusers.DDIMScheduler(
            num_train_timesteps=T,
            beta_start=CFG.beta_start,
            beta_end=CFG.beta_end,
            beta_schedule="scaled_linear",
        )
        .alphas_cumprod.double()
        .numpy()
    )
    ours = CFG.alphas_cumprod()
    assert ours.dtype == np.float64 and ours.shape == (T,)
    err = float(np.max(np.abs(ours - ref) / ref))
    print(f"alphas_cumprod max rel err {err:.2e} (diffusers computes it in float32)")
    assert err < 1e-5, f"max rel err {err:.2e}"


def test_alphas_cumprod_values():
    ac = CFG.alphas_cumprod()
    assert ac[0] == pytest.approx(1.0 - CFG.beta_start)
    assert np.all(np.diff(ac) < 0)
    assert 0.0 < ac[-1] < 0.01


def test_prediction_type_accepts_string():
    assert ScheduleConfig(prediction_type="v_prediction").prediction_type is (PredictionType.V_PREDICTION)


@pytest.mark.parametrize("kind", list(SamplerKind), ids=lambda k: k.value)
@pytest.mark.parametrize("spacing", list(Spacing), ids=lambda s: s.value)
def test_grid_shapes_and_dtypes(kind, spacing):
    grid = make_grid(CFG, kind, 20, spacing)
    assert len(grid) == 20
    assert grid.timesteps.dtype == np.int64
    assert grid.alpha_bar.dtype == grid.alpha_bar_next.dtype == np.float64
    np.testing.assert_array_equal(grid.alpha_bar, CFG.alphas_cumprod()[grid.timesteps])
    assert grid.init_alpha_bar == grid.alpha_bar[0]
    with pytest.raises(ValueError):
        grid.timesteps[0] = 3  # read-only: a grid may be shared between requests


def test_known_grids():
    """Hand-checked values of the SD 2.1 convention (leading spacing, steps_offset=1)."""
    ddim = make_grid(CFG, SamplerKind.DDIM, 10, Spacing.LEADING)
    np.testing.assert_array_equal(ddim.timesteps, [901, 801, 701, 601, 501, 401, 301, 201, 101, 1])
    dpm = make_grid(CFG, SamplerKind.DPMPP_2M, 10, Spacing.LEADING)
    np.testing.assert_array_equal(dpm.timesteps, [901, 811, 721, 631, 541, 451, 361, 271, 181, 91])
    trailing = make_grid(CFG, SamplerKind.EULER, 4, Spacing.TRAILING)
    np.testing.assert_array_equal(trailing.timesteps, [999, 749, 499, 249])


def test_ddim_next_alpha_rule():
    """DDIM moves to alphas_cumprod[t - T // n] (not always the next grid point), else final."""
    ac = CFG.alphas_cumprod()
    grid = make_grid(CFG, SamplerKind.DDIM, 3, Spacing.TRAILING)  # 999, 666, 332
    np.testing.assert_array_equal(grid.timesteps, [999, 666, 332])
    np.testing.assert_array_equal(grid.alpha_bar_next, [ac[666], ac[333], ac[0]])
    one = make_grid(ScheduleConfig(set_alpha_to_one=True), SamplerKind.DDIM, 3, Spacing.TRAILING)
    assert one.alpha_bar_next[-1] == 1.0


@pytest.mark.parametrize("kind", [SamplerKind.DPMPP_2M, SamplerKind.EULER], ids=lambda k: k.value)
def test_zero_final_sigma(kind):
    grid = make_grid(CFG, kind, 7, Spacing.LEADING)
    np.testing.assert_array_equal(grid.alpha_bar_next[:-1], grid.alpha_bar[1:])
    assert grid.alpha_bar_next[-1] == 1.0  # noise level sqrt((1 - ab) / ab) 0: the clean end


@pytest.mark.parametrize("kind", list(SamplerKind), ids=lambda k: k.value)
@pytest.mark.parametrize(
    "steps,strength,expected", [(10, 0.6, 6), (10, 0.65, 6), (25, 0.5, 12), (3, 0.34, 1), (5, 1.0, 5)]
)
def test_strength_keeps_the_tail(kind, steps, strength, expected):
    full = make_grid(CFG, kind, steps, Spacing.LEADING)
    part = make_grid(CFG, kind, steps, Spacing.LEADING, strength=strength)
    assert len(part) == expected == min(int(steps * strength), steps)
    np.testing.assert_array_equal(part.timesteps, full.timesteps[-expected:])
    np.testing.assert_array_equal(part.alpha_bar_next, full.alpha_bar_next[-expected:])


@pytest.mark.parametrize(
    "kwargs,names",
    [
        (dict(num_steps=0), "num_steps"),
        (dict(num_steps=-3), "num_steps"),
        (dict(num_steps=T + 1), "num_steps"),
        (dict(num_steps=10, strength=0.0), "strength"),
        (dict(num_steps=10, strength=-0.5), "strength"),
        (dict(num_steps=10, strength=1.5), "strength"),
        (dict(num_steps=10, strength=0.05), "strength >= 0.1"),  # names the minimum
        (dict(num_steps=T, spacing=Spacing.LEADING), "fewer steps"),  # t would reach T
    ],
)
def test_errors_name_the_argument(kwargs, names):
    kwargs = dict(dict(sampler=SamplerKind.DDIM, spacing=Spacing.TRAILING), **kwargs)
    with pytest.raises(ValueError, match=names.replace("(", r"\(")):
        make_grid(CFG, **kwargs)


def test_num_steps_must_be_int():
    with pytest.raises(TypeError, match="num_steps"):
        make_grid(CFG, SamplerKind.DDIM, 10.0, Spacing.LEADING)  # type: ignore[arg-type]


def test_enums_accept_their_strings():
    grid = make_grid(CFG, "dpmpp-2m", 5, "trailing")  # type: ignore[arg-type]
    assert len(grid) == 5
    with pytest.raises(ValueError):
        make_grid(CFG, "heun", 5, "trailing")  # type: ignore[arg-type]


def test_grid_validates_lengths():
    with pytest.raises(ValueError, match="lengths"):
        Grid(timesteps=np.array([3, 2]), alpha_bar=np.array([0.5]), alpha_bar_next=np.array([1.0]))


@settings(max_examples=150, deadline=None)
@given(
    num_steps=st.integers(1, 100),
    spacing=st.sampled_from(list(Spacing)),
    kind=st.sampled_from(list(SamplerKind)),
    set_alpha_to_one=st.booleans(),
    strength=st.floats(0.01, 1.0),
)
def test_grid_invariants(num_steps, spacing, kind, set_alpha_to_one, strength):
    cfg = ScheduleConfig(set_alpha_to_one=set_alpha_to_one)
    if int(num_steps * strength) == 0:
        with pytest.raises(ValueError, match="strength"):
            make_grid(cfg, kind, num_steps, spacing, strength)
        return
    grid = make_grid(cfg, kind, num_steps, spacing, strength)
    ts = grid.timesteps
    assert len(grid) == min(int(num_steps * strength), num_steps)
    assert ts.min() >= 0 and ts.max() <= T - 1
    assert np.all(np.diff(ts) < 0), "timesteps must be strictly descending"
    assert np.all(grid.alpha_bar_next <= 1.0)
    # Each step removes noise. The one exception is diffusers' DDIM rule at t = 0 with
    # set_alpha_to_one=False: it "moves" to alphas_cumprod[0], where it already is.
    stays = (kind is SamplerKind.DDIM) & (ts == 0) & (not set_alpha_to_one)
    assert np.all((grid.alpha_bar_next > grid.alpha_bar) | stays)
    assert np.all(grid.alpha_bar_next[stays] == grid.alpha_bar[stays])


@pytest.mark.parametrize("alpha_bar", [0.3, 1.0])
def test_q_sample_eq1(alpha_bar):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x0, eps = rng.standard_normal((2, 4, 3, 3)), rng.standard_normal((2, 4, 3, 3))
    expected = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * eps
    np.testing.assert_allclose(q_sample(x0, eps, alpha_bar), expected, rtol=1e-15)
    out = q_sample(torch.from_numpy(x0).float(), torch.from_numpy(eps).float(), np.float64(alpha_bar))
    assert out.dtype == torch.float32  # a float scalar keeps the tensor's dtype
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="alpha_bar"):
        q_sample(x0, eps, 0.0)
