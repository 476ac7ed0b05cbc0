"""Sampler contract: stateless, callbacks, argument errors, dtype/type preservation, no torch."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

import flipnet_rt.sampling as sampling
from flipnet_rt.sampling import (
    Prediction,
    PredictionType,
    SamplerKind,
    ScheduleConfig,
    Spacing,
    ddim_step,
    dpmpp_2m_step,
    euler_step,
    make_grid,
    parameterized,
    sample,
    sample_ddim,
    sample_dpmpp_2m,
    sample_euler,
)

CFG = ScheduleConfig()
AC = CFG.alphas_cumprod()
SHAPE = (2, 4, 6, 6)


def toy_model(x, t: int):
    """A deterministic, x-dependent stand-in network (eps or v output)."""
    return 0.5 * x + (t / 1000.0)


DENOISER = parameterized(toy_model, AC, PredictionType.EPSILON)
CASES = [(SamplerKind.DDIM, 0.0), (SamplerKind.DDIM, 0.7), (SamplerKind.DPMPP_2M, 0.0), (SamplerKind.EULER, 0.0)]
IDS = [f"{k.value}-eta{e:g}" for k, e in CASES]


def seeded_noise(seed: int):
    rng = np.random.default_rng(seed)
    return lambda x: rng.standard_normal(x.shape)


@pytest.mark.parametrize("kind,eta", CASES, ids=IDS)
def test_same_inputs_same_outputs(kind, eta):
    grid = make_grid(CFG, kind, 12, Spacing.LEADING)
    x = np.random.default_rng(0).standard_normal(SHAPE)
    a = sample(kind, DENOISER, x, grid, eta=eta, noise_like=seeded_noise(1))
    b = sample(kind, DENOISER, x, grid, eta=eta, noise_like=seeded_noise(1))
    np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(a, x)


@pytest.mark.parametrize("kind,eta", CASES, ids=IDS)
def test_interleaved_runs_do_not_interact(kind, eta):
    """Two runs stepped alternately (as concurrent requests) equal the two runs alone."""
    grid = make_grid(CFG, kind, 9, Spacing.TRAILING)
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)]
    alone = [sample(kind, DENOISER, x, grid, eta=eta, noise_like=seeded_noise(10 + j)) for j, x in enumerate(xs)]

    # Step both runs by hand, alternating, through the public step functions.
    noise = [seeded_noise(10), seeded_noise(11)]
    x0_prev: list = [None, None]
    ts, ab, abn = grid.timesteps.tolist(), grid.alpha_bar.tolist(), grid.alpha_bar_next.tolist()
    for i, t in enumerate(ts):
        for j in (0, 1):
            pred = DENOISER(xs[j], t)
            if kind is SamplerKind.DDIM:
                z = noise[j](xs[j]) if eta > 0 else None
                xs[j] = ddim_step(xs[j], pred, ab[i], abn[i], eta=eta, noise=z)
            elif kind is SamplerKind.DPMPP_2M:
                prev_ab = ab[i - 1] if x0_prev[j] is not None else None
                xs[j] = dpmpp_2m_step(xs[j], pred, ab[i], abn[i], x0_prev[j], prev_ab)
                x0_prev[j] = pred.x0
            else:
                xs[j] = euler_step(xs[j], pred, ab[i], abn[i])
    for j in (0, 1):
        np.testing.assert_allclose(xs[j], alone[j], rtol=1e-14, atol=1e-14)


def test_eta_without_noise_like_raises():
    grid = make_grid(CFG, SamplerKind.DDIM, 4, Spacing.LEADING)
    x = np.zeros(SHAPE)
    with pytest.raises(ValueError, match="noise_like"):
        sample_ddim(DENOISER, x, grid, eta=0.5)
    with pytest.raises(ValueError, match="noise_like"):
        sample(SamplerKind.DDIM, DENOISER, x, grid, eta=1.0)
    with pytest.raises(ValueError, match="eta"):
        sample_ddim(DENOISER, x, grid, eta=-0.1)
    with pytest.raises(ValueError, match="noise"):
        ddim_step(x, Prediction(x0=x, eps=x), 0.5, 0.6, eta=1.0)


@pytest.mark.parametrize("kind", [SamplerKind.DPMPP_2M, SamplerKind.EULER], ids=lambda k: k.value)
def test_eta_refused_for_deterministic_samplers(kind):
    grid = make_grid(CFG, kind, 4, Spacing.LEADING)
    with pytest.raises(ValueError, match="DDIM only"):
        sample(kind, DENOISER, np.zeros(SHAPE), grid, eta=0.5, noise_like=np.zeros_like)


def test_dpmpp_prev_arguments_come_together():
    x = np.zeros(SHAPE)
    with pytest.raises(ValueError, match="both"):
        dpmpp_2m_step(x, Prediction(x0=x, eps=x), 0.3, 0.5, x0_prev=x)


@pytest.mark.parametrize("kind,eta", CASES, ids=IDS)
def test_callback_once_per_step(kind, eta):
    grid = make_grid(CFG, kind, 7, Spacing.LEADING, strength=0.75)
    calls = []
    out = sample(
        kind,
        DENOISER,
        np.ones(SHAPE),
        grid,
        eta=eta,
        noise_like=seeded_noise(0),
        callback=lambda i, t, x, pred: calls.append((i, t, x, pred)),
    )
    assert [c[0] for c in calls] == list(range(len(grid)))
    assert [c[1] for c in calls] == grid.timesteps.tolist()
    assert all(isinstance(c[1], int) and isinstance(c[3], Prediction) for c in calls)
    assert calls[-1][2] is out


@pytest.mark.parametrize("kind", [SamplerKind.DPMPP_2M, SamplerKind.EULER], ids=lambda k: k.value)
def test_last_step_returns_x0(kind):
    """With final sigma 0 the result of the last step is the x0 prediction."""
    grid = make_grid(CFG, kind, 5, Spacing.LEADING)
    preds = []
    out = sample(kind, DENOISER, np.ones(SHAPE), grid, callback=lambda i, t, x, p: preds.append(p))
    np.testing.assert_allclose(out, preds[-1].x0, rtol=1e-12)


def test_dispatch_matches_direct_calls():
    x = np.random.default_rng(3).standard_normal(SHAPE)
    for kind, fn in (
        (SamplerKind.DDIM, sample_ddim),
        (SamplerKind.DPMPP_2M, sample_dpmpp_2m),
        (SamplerKind.EULER, sample_euler),
    ):
        grid = make_grid(CFG, kind, 6, Spacing.TRAILING)
        np.testing.assert_array_equal(sample(kind.value, DENOISER, x, grid), fn(DENOISER, x, grid))


def test_parameterizations_agree():
    """An eps network and the equivalent v network give the same predictions."""
    eps_den = parameterized(toy_model, AC, PredictionType.EPSILON)

    def v_model(x, t):  # v = sqrt(ab) eps - sqrt(1 - ab) x0
        p = eps_den(x, t)
        return math.sqrt(AC[t]) * p.eps - math.sqrt(1 - AC[t]) * p.x0

    v_den = parameterized(v_model, AC, PredictionType.V_PREDICTION)
    x = np.random.default_rng(4).standard_normal(SHAPE)
    for t in (1, 500, 999):
        a, b = eps_den(x, t), v_den(x, t)
        np.testing.assert_allclose(b.x0, a.x0, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(b.eps, a.eps, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind,eta", CASES, ids=IDS)
def test_keeps_array_type_and_dtype(kind, eta):
    torch = pytest.importorskip("torch")
    grid = make_grid(CFG, kind, 5, Spacing.LEADING)
    x32 = np.random.default_rng(5).standard_normal(SHAPE).astype(np.float32)
    out = sample(kind, DENOISER, x32, grid, eta=eta, noise_like=lambda x: np.zeros_like(x))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    xt = torch.from_numpy(x32).half()
    out_t = sample(kind, DENOISER, xt, grid, eta=eta, noise_like=torch.randn_like)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float16


def test_sampling_package_imports_no_torch():
    """flipnet_rt/sampling must run on numpy alone: no torch import, not even a lazy one."""
    allowed = {"numpy", "__future__", "math", "dataclasses", "enum", "typing", "collections"}
    if Path(sampling.__file__).parents[2].name == "mutants":  # make mutants: its trampolines import mutmut
        allowed |= {"mutmut", "inspect"}
    for path in Path(sampling.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{path.name} imports {roots - allowed}"
