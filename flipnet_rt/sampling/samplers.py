"""Diffusion samplers: stateless functions over a denoiser contract (k-diffusion style).

Every sampler works in the variance-preserving latent space of paper Eq. (1),
``z_t = sqrt(ab_t) z_0 + sqrt(1 - ab_t) eps``, on arrays ``x`` of shape [B, C, H, W]
(numpy arrays for ONNX Runtime, torch tensors on any device for the torch backend).
No torch import here: every update is ``a * x + b * y`` with Python float coefficients,
so it keeps x's type, dtype and device and copies nothing to the host.

The network's parameterisation (eps or v) lives in ``parameterized``; samplers only see a
``Denoiser`` returning both the x0 and the eps prediction. Samplers keep no state between
calls: the loops hold the previous x0 of DPM-Solver++(2M) in a local variable, so one
function can serve concurrent requests and be captured in a CUDA graph per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np

from .schedule import Grid, PredictionType, SamplerKind

__all__ = [
    "Callback",
    "Denoiser",
    "NoiseLike",
    "Prediction",
    "ddim_step",
    "dpmpp_2m_step",
    "euler_step",
    "parameterized",
    "sample",
    "sample_ddim",
    "sample_dpmpp_2m",
    "sample_euler",
]

_L = TypeVar("_L", bound="LinearArray")


class LinearArray(Protocol):
    """What the samplers do with arrays: scale by a Python float, add, subtract (numpy, torch, CuPy)."""

    def __rmul__(self: _L, other: float, /) -> _L: ...
    def __add__(self: _L, other: _L, /) -> _L: ...
    def __sub__(self: _L, other: _L, /) -> _L: ...


A = TypeVar("A", bound=LinearArray)  # numpy.ndarray or torch.Tensor, [B, C, H, W]


@dataclass(frozen=True)
class Prediction(Generic[A]):
    """A denoiser's output at one step, both arrays shaped and typed like x.

    ``x0`` must stay valid until the following step has run (DPM-Solver++(2M) reads the
    previous x0); ``eps`` is only read within its own step.
    """

    x0: A
    eps: A


# Denoiser(x_t [B, C, H, W], t: int) -> Prediction: the x0 and eps predictions at x_t.
Denoiser = Callable[[A, int], Prediction[A]]
# callback(i, t, x_next, pred): called after step i with the new x. Kept as public API though the
# runtime passes none: k-diffusion's sampler signature (STYLE.md), the hook for progress or per-step checks.
Callback = Callable[[int, int, A, Prediction[A]], None]


# noise_like(x): fresh standard normal noise shaped, typed and placed like x.
NoiseLike = Callable[[A], A]


def parameterized(
    model: Callable[[A, int], A],
    alphas_cumprod: np.ndarray,
    prediction_type: PredictionType,
) -> Denoiser[A]:
    """Wrap a raw network ``model(x_t, t) -> out`` (eps or v, shaped like x_t) as a Denoiser.

    eps: ``x0 = (x - sqrt(1 - ab) eps) / sqrt(ab)`` (Eq. (3)).
    v:   ``x0 = sqrt(ab) x - sqrt(1 - ab) v``, ``eps = sqrt(1 - ab) x + sqrt(ab) v``.

    Args:
        model: the network, called with the VP latent and an integer timestep.
        alphas_cumprod: [T] float, ``ScheduleConfig.alphas_cumprod()``.
        prediction_type: what ``model`` returns.
    """
    kind = PredictionType(prediction_type)
    ab = np.asarray(alphas_cumprod, dtype=np.float64)
    sqrt_ab: list[float] = np.sqrt(ab).tolist()
    sqrt_1m_ab: list[float] = np.sqrt(1.0 - ab).tolist()

    def denoise_eps(x: A, t: int) -> Prediction[A]:
        a, s = sqrt_ab[t], sqrt_1m_ab[t]
        eps = model(x, t)
        return Prediction(x0=(1.0 / a) * x - (s / a) * eps, eps=eps)

    def denoise_v(x: A, t: int) -> Prediction[A]:
        a, s = sqrt_ab[t], sqrt_1m_ab[t]
        v = model(x, t)
        return Prediction(x0=a * x - s * v, eps=s * x + a * v)

    return denoise_eps if kind is PredictionType.EPSILON else denoise_v


# ----------------------------------------------------------------------------- steps


def ddim_step(
    x: A,
    pred: Prediction[A],
    alpha_bar: float,
    alpha_bar_next: float,
    eta: float = 0.0,
    noise: A | None = None,
) -> A:
    """DDIM, Song et al. 2020 Eq. (12); sigma_t(eta) of Eq. (16); [B, C, H, W] -> same."""
    a, an = float(alpha_bar), float(alpha_bar_next)
    if eta == 0.0:
        return math.sqrt(an) * pred.x0 + math.sqrt(1.0 - an) * pred.eps
    if noise is None:
        raise ValueError(f"ddim_step: eta={eta} > 0 needs noise (standard normal, shaped like x)")
    std = eta * math.sqrt((1.0 - an) / (1.0 - a) * (1.0 - a / an))
    direction = math.sqrt(max(1.0 - an - std * std, 0.0))
    return math.sqrt(an) * pred.x0 + direction * pred.eps + std * noise


def _lambda(alpha_bar: float) -> float:
    """Half log-SNR ``log(alpha_t / sigma_t)`` of DPM-Solver (Lu et al. 2022)."""
    return 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))


def dpmpp_2m_step(
    x: A,
    pred: Prediction[A],
    alpha_bar: float,
    alpha_bar_next: float,
    x0_prev: A | None = None,
    alpha_bar_prev: float | None = None,
) -> A:
    """DPM-Solver++(2M), Lu et al. 2022 Alg. 2 (midpoint form, as diffusers); [B, C, H, W] -> same.

    First order (= DDIM) when no previous x0 is given, or when the step ends at the clean
    end (``alpha_bar_next == 1``, diffusers' final_sigmas_type="zero"), where it returns x0.
    ``x0_prev`` is the x0 predicted at ``alpha_bar_prev``, the previous grid point.
    """
    if (x0_prev is None) != (alpha_bar_prev is None):
        raise ValueError("dpmpp_2m_step: pass both x0_prev and alpha_bar_prev, or neither")
    a, an = float(alpha_bar), float(alpha_bar_next)
    if an >= 1.0:
        return 1.0 * pred.x0  # a copy: x0 may live in a reused output buffer
    alpha_t, sigma_t, sigma_s = math.sqrt(an), math.sqrt(1.0 - an), math.sqrt(1.0 - a)
    h = _lambda(an) - _lambda(a)
    c_x = sigma_t / sigma_s
    c_d = -alpha_t * math.expm1(-h)  # alpha_t (1 - e^{-h})
    if x0_prev is None or alpha_bar_prev is None:  # both or neither (checked above)
        return c_x * x + c_d * pred.x0
    r0 = (_lambda(a) - _lambda(float(alpha_bar_prev))) / h
    # D0 = x0, D1 = (x0 - x0_prev) / r0;  x' = c_x x + c_d D0 + 0.5 c_d D1
    k = 0.5 * c_d / r0
    return c_x * x + (c_d + k) * pred.x0 - k * x0_prev


def euler_step(x: A, pred: Prediction[A], alpha_bar: float, alpha_bar_next: float) -> A:
    """Euler, Karras et al. 2022 Alg. 2 with s_churn=0, in VP space; [B, C, H, W] -> same.

    ``x_k = x / sqrt(ab)``, ``x_k' = x_k + (sigma' - sigma) eps``, ``x' = sqrt(ab') x_k'``;
    at sigma' = 0 this is x0 (for a consistent prediction).
    """
    a, an = float(alpha_bar), float(alpha_bar_next)
    sigma, sigma_next = math.sqrt((1.0 - a) / a), math.sqrt((1.0 - an) / an)
    return math.sqrt(an / a) * x + math.sqrt(an) * (sigma_next - sigma) * pred.eps


# ----------------------------------------------------------------------------- loops


def sample_ddim(
    denoiser: Denoiser[A],
    x: A,
    grid: Grid,
    *,
    eta: float = 0.0,
    noise_like: NoiseLike[A] | None = None,
    callback: Callback[A] | None = None,
) -> A:
    """DDIM sampling over ``grid``; x [B, C, H, W] at ``grid.alpha_bar[0]`` -> x at the end.

    ``eta`` 0 is deterministic DDIM, 1 is DDPM-like; eta > 0 draws ``noise_like(x)`` once per step.
    """
    if eta < 0.0:
        raise ValueError(f"eta={eta}; use eta >= 0 (0: deterministic DDIM, 1: DDPM-like)")
    if eta > 0.0 and noise_like is None:
        raise ValueError(
            f"eta={eta} > 0 needs noise_like, e.g. noise_like=torch.randn_like or "
            "noise_like=lambda x: rng.standard_normal(x.shape, dtype=x.dtype)"
        )
    ts, ab, ab_next = grid.timesteps.tolist(), grid.alpha_bar.tolist(), grid.alpha_bar_next.tolist()
    for i, t in enumerate(ts):
        pred = denoiser(x, t)
        noise = noise_like(x) if noise_like is not None and eta > 0.0 else None
        x = ddim_step(x, pred, ab[i], ab_next[i], eta=eta, noise=noise)
        if callback is not None:
            callback(i, t, x, pred)
    return x


def sample_dpmpp_2m(
    denoiser: Denoiser[A],
    x: A,
    grid: Grid,
    *,
    callback: Callback[A] | None = None,
) -> A:
    """DPM-Solver++(2M) over ``grid``; x [B, C, H, W] at ``grid.alpha_bar[0]`` -> x at the end.

    As diffusers (solver_order=2, lower_order_final=True, final_sigmas_type="zero"): the first
    step is first order, the last one returns x0, the others are second order. (diffusers'
    ``lower_order_second``, a first-order second-to-last step below 15 steps, only takes
    effect for solver_order=3; with order 2 that step is second order there too.)
    """
    ts, ab, ab_next = grid.timesteps.tolist(), grid.alpha_bar.tolist(), grid.alpha_bar_next.tolist()
    x0_prev: A | None = None
    for i, t in enumerate(ts):
        pred = denoiser(x, t)
        ab_prev = ab[i - 1] if x0_prev is not None else None
        x = dpmpp_2m_step(x, pred, ab[i], ab_next[i], x0_prev=x0_prev, alpha_bar_prev=ab_prev)
        x0_prev = pred.x0
        if callback is not None:
            callback(i, t, x, pred)
    return x


def sample_euler(
    denoiser: Denoiser[A],
    x: A,
    grid: Grid,
    *,
    callback: Callback[A] | None = None,
) -> A:
    """Euler (Karras et al. 2022 Alg. 2, s_churn=0) over ``grid``; x [B, C, H, W] -> x at the end."""
    ts, ab, ab_next = grid.timesteps.tolist(), grid.alpha_bar.tolist(), grid.alpha_bar_next.tolist()
    for i, t in enumerate(ts):
        pred = denoiser(x, t)
        x = euler_step(x, pred, ab[i], ab_next[i])
        if callback is not None:
            callback(i, t, x, pred)
    return x


def _ddim(
    denoiser: Denoiser[A],
    x: A,
    grid: Grid,
    *,
    eta: float,
    noise_like: NoiseLike[A] | None,
    callback: Callback[A] | None,
) -> A:
    return sample_ddim(denoiser, x, grid, eta=eta, noise_like=noise_like, callback=callback)


def _deterministic(fn: Callable[..., A], name: str) -> Callable[..., A]:
    """Adapt a sampler without eta to ``sample``'s signature, refusing eta != 0."""

    def run(
        denoiser: Denoiser[A],
        x: A,
        grid: Grid,
        *,
        eta: float,
        noise_like: NoiseLike[A] | None,
        callback: Callback[A] | None,
    ) -> A:
        if eta != 0.0:
            raise ValueError(f"eta={eta} applies to DDIM only; {name} is deterministic, use eta=0")
        return fn(denoiser, x, grid, callback=callback)

    return run


_SAMPLERS: dict[SamplerKind, Callable[..., object]] = {
    SamplerKind.DDIM: _ddim,
    SamplerKind.DPMPP_2M: _deterministic(sample_dpmpp_2m, "dpmpp-2m"),
    SamplerKind.EULER: _deterministic(sample_euler, "euler"),
}


def sample(
    kind: SamplerKind,
    denoiser: Denoiser[A],
    x: A,
    grid: Grid,
    *,
    eta: float = 0.0,
    noise_like: NoiseLike[A] | None = None,
    callback: Callback[A] | None = None,
) -> A:
    """Run the sampler ``kind`` over ``grid`` (built by ``make_grid`` for the same kind).

    x: [B, C, H, W] at noise level ``grid.alpha_bar[0]`` (pure noise, or ``q_sample`` for img2img).
    ``eta`` and ``noise_like`` apply to DDIM only.
    """
    return _SAMPLERS[SamplerKind(kind)](  # type: ignore[return-value]
        denoiser, x, grid, eta=eta, noise_like=noise_like, callback=callback
    )
