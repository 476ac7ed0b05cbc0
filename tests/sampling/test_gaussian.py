"""Analytic check: sampling Gaussian data with its exact denoiser.

For data x0 ~ N(mu, s^2 I) the noisy marginal at alpha_bar ``a`` is
N(sqrt(a) mu, v) with v = a s^2 + 1 - a, and the exact (MMSE) predictions are

    E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) mu) / v,
    E[x0  | x_t] = (x_t - sqrt(1 - a) E[eps | x_t]) / sqrt(a)         (paper Eq. (3)).

Every sampler step is then affine in x, so the output distribution of the *discrete*
sampler started from z ~ N(0, I) is Gaussian with moments we can propagate in closed form.
The expected moments differ from (mu, s) by two known biases, both included:

* prior mismatch: the sampler starts from N(0, 1), but the true marginal at the first grid
  point (a ~ 0.006) is N(sqrt(a) mu, v); through the probability-flow ODE this shifts the
  output mean by about -s sqrt(a) mu / sqrt(v) ~ -0.02;
* discretisation: at 50 steps the samplers lose 5-8% of the std (11% for DDIM eta=1, which
  ignores the posterior variance of x0 in each step), e.g. the last step (sigma -> 0)
  returns E[x0 | x_t], whose std is below s; DDIM ends at alphas_cumprod[0] rather than 1
  (set_alpha_to_one=False).

The reference propagates the moments with k-diffusion's formulation (Karras et al. 2022,
x_k = x / sqrt(a), denoiser D(x_k; sigma)), a different form from the VP-space code under
test. Samples are checked against it within 5 standard errors (the tolerance is sampling
error only: the biases are in the expected values). A second test shows the biases vanish
with more steps, i.e. that the samplers converge to the target distribution.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from flipnet_rt.sampling import (
    Grid,
    PredictionType,
    SamplerKind,
    ScheduleConfig,
    Spacing,
    make_grid,
    parameterized,
    sample,
)

MU, S = 0.7, 0.4
N_ROWS, N_COLS = 20000, 4  # 80000 i.i.d. values
STEPS = 50


def gaussian_model(ac: np.ndarray, prediction_type: PredictionType):
    """The exact network output (eps or v) for N(MU, S^2) data."""

    def model(x, t: int):
        a = float(ac[t])
        v = a * S * S + 1.0 - a
        eps = (math.sqrt(1.0 - a) / v) * (x - math.sqrt(a) * MU)
        if prediction_type is PredictionType.EPSILON:
            return eps
        x0 = (1.0 / math.sqrt(a)) * x - math.sqrt((1.0 - a) / a) * eps
        return math.sqrt(a) * eps - math.sqrt(1.0 - a) * x0  # v = sqrt(a) eps - sqrt(1-a) x0

    return model


def _sigma(a: float) -> float:
    return math.sqrt((1.0 - a) / a)


def _denoise_k(xk: np.ndarray, sigma: float) -> np.ndarray:
    """k-diffusion Gaussian denoiser on an affine form xk = [c, g] (x_k = c + g z)."""
    r = S * S / (S * S + sigma * sigma)
    return np.array([MU + r * (xk[0] - MU), r * xk[1]])


def reference_moments(kind: SamplerKind, grid: Grid, eta: float) -> tuple[float, float]:
    """Exact (mean, std) of the discrete sampler's output for a N(0, 1) start."""
    ab, ab_next = grid.alpha_bar.tolist(), grid.alpha_bar_next.tolist()
    if kind is SamplerKind.DDIM and eta > 0:
        # Song et al. Eq. (12) with sigma_t(eta) of Eq. (16): x' = A x + B + std xi, xi fresh.
        mean, var = 0.0, 1.0
        for a, an in zip(ab, ab_next):
            v = a * S * S + 1.0 - a
            k_eps = math.sqrt(1.0 - a) / v  # d eps_hat / dx
            k_x0 = (1.0 - math.sqrt(1.0 - a) * k_eps) / math.sqrt(a)  # d x0_hat / dx
            std = eta * math.sqrt((1.0 - an) / (1.0 - a) * (1.0 - a / an))
            direction = math.sqrt(1.0 - an - std * std)
            x0_mean = MU + k_x0 * (mean - math.sqrt(a) * MU)
            eps_mean = k_eps * (mean - math.sqrt(a) * MU)
            gain = math.sqrt(an) * k_x0 + direction * k_eps
            mean = math.sqrt(an) * x0_mean + direction * eps_mean
            var = gain * gain * var + std * std
        return mean, math.sqrt(var)

    # Deterministic samplers, in k-space on affine forms x_k = c + g z.
    xk = np.array([0.0, 1.0]) / math.sqrt(ab[0])
    old = None
    for i, (a, an) in enumerate(zip(ab, ab_next)):
        sigma, sigma_next = _sigma(a), _sigma(an)
        d = _denoise_k(xk, sigma)
        if kind is not SamplerKind.DPMPP_2M:  # DDIM(eta=0) == Euler in k-space
            xk = xk + (sigma_next - sigma) * (xk - d) / sigma
        elif old is None or sigma_next == 0.0:  # k-diffusion sample_dpmpp_2m
            xk = (sigma_next / sigma) * xk + (1.0 - sigma_next / sigma) * d
        else:
            h = math.log(sigma / sigma_next)
            r = math.log(_sigma(ab[i - 1]) / sigma) / h
            dd = (1.0 + 1.0 / (2.0 * r)) * d - (1.0 / (2.0 * r)) * old
            xk = (sigma_next / sigma) * xk - math.expm1(-h) * dd
        old = d
    x = math.sqrt(ab_next[-1]) * xk
    return float(x[0]), abs(float(x[1]))


CASES = [
    (SamplerKind.DDIM, 0.0, PredictionType.EPSILON),
    (SamplerKind.DDIM, 1.0, PredictionType.EPSILON),
    (SamplerKind.DDIM, 1.0, PredictionType.V_PREDICTION),
    (SamplerKind.DPMPP_2M, 0.0, PredictionType.EPSILON),
    (SamplerKind.DPMPP_2M, 0.0, PredictionType.V_PREDICTION),
    (SamplerKind.EULER, 0.0, PredictionType.EPSILON),
    (SamplerKind.EULER, 0.0, PredictionType.V_PREDICTION),
]


@pytest.mark.parametrize("spacing", [Spacing.LEADING, Spacing.TRAILING], ids=lambda s: s.value)
@pytest.mark.parametrize("kind,eta,pred", CASES, ids=[f"{k.value}-eta{e:g}-{p.value}" for k, e, p in CASES])
def test_gaussian_data_moments(kind, eta, pred, spacing):
    cfg = ScheduleConfig(prediction_type=pred)  # SD 2.1-base schedule, set_alpha_to_one=False
    ac = cfg.alphas_cumprod()
    grid = make_grid(cfg, kind, STEPS, spacing)
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((N_ROWS, N_COLS))  # prior noise N(0, I)
    out = sample(
        kind,
        parameterized(gaussian_model(ac, pred), ac, pred),
        x,
        grid,
        eta=eta,
        noise_like=lambda x: rng.standard_normal(x.shape),
    )
    mean, std = float(out.mean()), float(out.std())
    ref_mean, ref_std = reference_moments(kind, grid, eta)
    n = out.size
    tol_mean = 5.0 * ref_std / math.sqrt(n)  # 5 standard errors of the sample mean
    tol_std = 5.0 * ref_std / math.sqrt(2.0 * (n - 1))  # ... and of the sample std (Gaussian)
    print(
        f"{kind.value} eta={eta:g} {pred.value} {spacing.value}: mean {mean:.4f} "
        f"(expected {ref_mean:.4f} +- {tol_mean:.4f}, data {MU}), std {std:.4f} "
        f"(expected {ref_std:.4f} +- {tol_std:.4f}, data {S})"
    )
    assert abs(mean - ref_mean) <= tol_mean, f"mean {mean:.5f} vs {ref_mean:.5f} +- {tol_mean:.5f}"
    assert abs(std - ref_std) <= tol_std, f"std {std:.5f} vs {ref_std:.5f} +- {tol_std:.5f}"


CONVERGENCE_CASES = [
    (SamplerKind.DDIM, 0.0),
    (SamplerKind.DDIM, 1.0),
    (SamplerKind.DPMPP_2M, 0.0),
    (SamplerKind.EULER, 0.0),
]


@pytest.mark.parametrize("kind,eta", CONVERGENCE_CASES, ids=[f"{k.value}-eta{e:g}" for k, e in CONVERGENCE_CASES])
def test_bias_vanishes_with_steps(kind, eta):
    """Our samplers' exact output moments, read off without sampling error, converge.

    A deterministic sampler maps z affinely, so running it on z = [0, 1] gives the output
    (mean, std) exactly; the mean of DDIM with eta > 0 is exact with zero noise. They must
    equal the reference to round-off. The target of the deterministic (probability-flow)
    samplers started from N(0, 1) at a0 is the exact flow map's image
    N(mu - s sqrt(a0) mu / sqrt(v0), s^2 / v0); the stochastic one forgets its start and
    targets the data N(mu, s^2). The distance must shrink with the steps, below 1e-2 at 1000.
    """
    cfg = ScheduleConfig(set_alpha_to_one=True)
    ac = cfg.alphas_cumprod()
    denoiser = parameterized(gaussian_model(ac, cfg.prediction_type), ac, cfg.prediction_type)
    errs = []
    for steps in (10, 50, 250, 1000):
        grid = make_grid(cfg, kind, steps, Spacing.TRAILING)
        ref_mean, ref_std = reference_moments(kind, grid, eta)
        if eta == 0.0:
            out = sample(kind, denoiser, np.array([0.0, 1.0]), grid)
            mean, std = float(out[0]), float(out[1] - out[0])
            assert std == pytest.approx(ref_std, rel=1e-9)
            a0 = float(grid.alpha_bar[0])
            v0 = a0 * S * S + 1.0 - a0
            target = (MU - S * math.sqrt(a0) * MU / math.sqrt(v0), S / math.sqrt(v0))
        else:
            out = sample(kind, denoiser, np.array([0.0]), grid, eta=eta, noise_like=np.zeros_like)
            mean, std = float(out[0]), ref_std
            target = (MU, S)
        assert mean == pytest.approx(ref_mean, rel=1e-9, abs=1e-12)
        errs.append(max(abs(mean - target[0]), abs(std - target[1])))
    print(
        f"{kind.value} eta={eta:g}: max(|mean - target|, |std - target|) at 10/50/250/1000 "
        "steps: " + ", ".join(f"{e:.2e}" for e in errs)
    )
    assert errs[0] > errs[1] > errs[2] > errs[3]
    assert errs[3] < 1e-2
