"""Parity with diffusers' schedulers, the oracle: same config, same model outputs, every step.

The "network" returns a fixed random output per timestep whatever its input, so both sides
see identical model outputs and any difference is the sampler's. Our side runs twice, on
numpy float64 arrays and on torch float64 tensors: the same code drives both.

diffusers keeps alphas_cumprod and sigmas in float32 (and DPM/Euler upcast the sample to
float32), so agreement is to float32 round-off accumulated over the steps; we allow 1e-5.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from flipnet_rt.sampling import (  # noqa: E402
    PredictionType,
    SamplerKind,
    ScheduleConfig,
    Spacing,
    make_grid,
    parameterized,
    sample,
)

# diffusers' own np.array(tensor) calls under numpy 2
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

RTOL = 1e-5
SHAPE = (2, 4, 8, 8)  # [B, C, H, W]


def diffusers_scheduler(cfg: ScheduleConfig, kind: SamplerKind, spacing: Spacing):
    common = dict(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule="scaled_linear",
        steps_offset=cfg.steps_offset,
        timestep_spacing=spacing.value,
        prediction_type=cfg.prediction_type.value,
    )
    if kind is SamplerKind.DDIM:
        return diffusers.DDIMScheduler(**common, set_alpha_to_one=cfg.set_alpha_to_one, clip_sample=False)
    if kind is SamplerKind.DPMPP_2M:
        return diffusers.DPMSolverMultistepScheduler(
            **common,
            algorithm_type="dpmsolver++",
            solver_order=2,
            solver_type="midpoint",
            lower_order_final=True,
            final_sigmas_type="zero",
        )
    return diffusers.EulerDiscreteScheduler(**common, final_sigmas_type="zero")


def rel_err(ours, ref: torch.Tensor) -> float:
    ours, ref = torch.as_tensor(ours).double(), ref.double()
    return float((ours - ref).abs().max() / ref.abs().max())


def run_case(
    kind: SamplerKind, spacing: Spacing, steps: int, pred: PredictionType, strength: float, eta: float
) -> None:
    cfg = ScheduleConfig(prediction_type=pred)
    grid = make_grid(cfg, kind, steps, spacing, strength)
    n = len(grid)

    # img2img slicing exactly as StableDiffusionImg2ImgPipeline.get_timesteps
    sched = diffusers_scheduler(cfg, kind, spacing)
    sched.set_timesteps(steps)
    init = min(int(steps * strength), steps)
    t_start = max(steps - init, 0)
    ref_ts = sched.timesteps[t_start * sched.order :]
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(t_start * sched.order)
    np.testing.assert_array_equal(grid.timesteps, ref_ts.numpy().astype(np.int64))

    rng = np.random.default_rng(zlib.crc32(f"{kind}{spacing}{steps}{pred}{strength}{eta}".encode()))
    x_init = rng.standard_normal(SHAPE)
    outputs = {int(t): rng.standard_normal(SHAPE) for t in grid.timesteps}  # one per step
    noises = [rng.standard_normal(SHAPE) for _ in range(n)]

    # --- diffusers: prev_sample after every step (Euler works in x_k = x * sqrt(sigma^2 + 1))
    def k_scale(i: int) -> float:
        if kind is not SamplerKind.EULER:
            return 1.0
        return math.sqrt(float(sched.sigmas[t_start + i]) ** 2 + 1.0)

    ref_xs = []
    x_ref = torch.from_numpy(x_init) * k_scale(0)
    for i, t in enumerate(ref_ts):
        model_input = sched.scale_model_input(x_ref, t)
        if kind is SamplerKind.EULER:  # the network sees the VP latent x in both worlds
            np.testing.assert_allclose(model_input.numpy(), (x_ref / k_scale(i)).numpy(), rtol=1e-6)
        out = torch.from_numpy(outputs[int(t)])
        if kind is SamplerKind.DDIM:
            step = sched.step(out, t, x_ref, eta=eta, variance_noise=torch.from_numpy(noises[i]))
        else:
            step = sched.step(out, t, x_ref)
        x_ref = step.prev_sample
        ref_xs.append(x_ref / k_scale(i + 1))  # back to VP; scale 1 at sigma 0

    # --- ours, numpy then torch
    ac = cfg.alphas_cumprod()
    for backend, wrap in (("numpy", lambda a: a), ("torch", torch.from_numpy)):
        ours = []
        noise_iter = iter([wrap(z) for z in noises])
        model = lambda x, t, wrap=wrap: wrap(outputs[t])  # noqa: E731
        sample(
            kind,
            parameterized(model, ac, pred),
            wrap(x_init),
            grid,
            eta=eta,
            noise_like=(lambda x, it=noise_iter: next(it)) if eta > 0 else None,
            callback=lambda i, t, x, p, ours=ours: ours.append(x),
        )
        assert len(ours) == n
        err = max(rel_err(a, b) for a, b in zip(ours, ref_xs))
        print(
            f"{kind.value} {spacing.value} n={steps} {pred.value} strength={strength} "
            f"eta={eta} [{backend}]: max rel err {err:.2e}"
        )
        assert err <= RTOL, f"{kind.value} {backend}: max rel err {err:.2e} > {RTOL:.0e}"


# (num_steps, strength); strength 0.6 of 1 step leaves none (make_grid refuses it).
RUNS = [(1, 1.0), (2, 1.0), (2, 0.6), (10, 1.0), (10, 0.6), (20, 1.0), (20, 0.6), (25, 1.0), (25, 0.6)]
RUN_IDS = [f"n{n}-s{s:g}" for n, s in RUNS]
PREDS = list(PredictionType)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("pred", PREDS, ids=lambda p: p.value)
@pytest.mark.parametrize("steps,strength", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("spacing", list(Spacing), ids=lambda s: s.value)
def test_ddim_matches_diffusers(spacing, steps, strength, pred, eta):
    run_case(SamplerKind.DDIM, spacing, steps, pred, strength, eta)


@pytest.mark.parametrize("pred", PREDS, ids=lambda p: p.value)
@pytest.mark.parametrize("steps,strength", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("spacing", list(Spacing), ids=lambda s: s.value)
def test_dpmpp_2m_matches_diffusers(spacing, steps, strength, pred):
    run_case(SamplerKind.DPMPP_2M, spacing, steps, pred, strength, 0.0)


# Euler with linspace spacing is left out: diffusers then uses non-integer timesteps
# (e.g. 945.05) and interpolates sigma between training steps, while our grid rounds them
# to integers so that the network always sees a training timestep (see schedule.py).
EULER_SPACINGS = [Spacing.LEADING, Spacing.TRAILING]


@pytest.mark.parametrize("pred", PREDS, ids=lambda p: p.value)
@pytest.mark.parametrize("steps,strength", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("spacing", EULER_SPACINGS, ids=lambda s: s.value)
def test_euler_matches_diffusers(spacing, steps, strength, pred):
    run_case(SamplerKind.EULER, spacing, steps, pred, strength, 0.0)


GRID_KINDS = [(k, s) for k in SamplerKind for s in Spacing if not (k is SamplerKind.EULER and s is Spacing.LINSPACE)]


@pytest.mark.parametrize("steps", [1, 7, 50, 61, 100])
@pytest.mark.parametrize("kind,spacing", GRID_KINDS, ids=[f"{k.value}-{s.value}" for k, s in GRID_KINDS])
def test_timesteps_match_diffusers(kind, spacing, steps):
    """Grids for more step counts (timesteps only, no sampling)."""
    sched = diffusers_scheduler(ScheduleConfig(), kind, spacing)
    sched.set_timesteps(steps)
    ref = sched.timesteps.numpy().astype(np.int64)
    ours = make_grid(ScheduleConfig(), kind, steps, spacing).timesteps
    if spacing is Spacing.TRAILING and len(ref) == steps + 1:
        # diffusers' np.arange(T, 0, -T/n) yields a spurious last point (timestep -1) for some n
        assert ref[-1] == -1 and steps == 61
        ref = ref[:-1]
    np.testing.assert_array_equal(ours, ref)
