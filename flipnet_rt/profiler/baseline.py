"""The naive loop ``--baseline`` compares against, in the same run: how a first port would look.

PyTorch eager; the joint 2B UNet every step (no condition cache); classifier-free guidance as
two separate UNet calls; diffusers' DPMSolverMultistepScheduler for the update (with its
per-step Python state and host-side bookkeeping). Same model, same images, same steps.

The model may be shared with the bench's restorers, whose torch backends move it (to their device
and dtype when they open, back to the host when a CUDA backend closes): the baseline never relies
on where they left it. It puts the weights on the device (and dtype) it is asked to run in for the
run, and back where it found them afterwards (:func:`placed`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from ..imaging.geometry import fit, unfit
from ..imaging.tensor import to_float, to_uint8
from ..models.flipnet import FlipNet

FLOAT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` (the current device) and ``cuda:0`` count as one place when either has no index."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


@contextmanager
def placed(model: FlipNet, device: str | torch.device, dtype: str | None = None) -> Iterator[FlipNet]:
    """``model`` with its weights on ``device`` in ``dtype`` (None: the dtype they have) inside the
    block, and back on the device and dtype they had before it on exit (also on an error). A model
    already in place is not touched."""
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype: {dtype!r}; use one of {', '.join(FLOAT_DTYPES)}")
    first = next(model.parameters())
    where, was = first.device, first.dtype
    want_device = torch.device(device)
    want_dtype = FLOAT_DTYPES[dtype] if dtype is not None else was
    if _same_device(where, want_device) and was == want_dtype:
        yield model
        return
    model.to(device=want_device, dtype=want_dtype)
    try:
        yield model
    finally:
        model.to(device=where, dtype=was)


def naive_restore(
    model: FlipNet,
    images: Sequence[np.ndarray],
    *,
    steps: int,
    guidance: float,
    phi: float = 1.0,
    t_cond: int = 0,
    seed: int = 0,
    device: str = "cpu",
    dtype: str | None = None,
) -> list[np.ndarray]:
    """``uint8 [H, W, 3]`` images -> their restorations (same shapes), by the naive loop on ``device``
    in ``dtype`` ("float32", "float16", "bfloat16"; None: the weights' dtype); the weights are moved
    there for the call and back afterwards (:func:`placed`; outside inference mode, so the moved
    weights stay ordinary tensors)."""
    with placed(model, device, dtype):
        return _naive_restore(
            model, images, steps=steps, guidance=guidance, phi=phi, t_cond=t_cond, seed=seed, device=device
        )


@torch.inference_mode()
def _naive_restore(
    model: FlipNet,
    images: Sequence[np.ndarray],
    *,
    steps: int,
    guidance: float,
    phi: float,
    t_cond: int,
    seed: int,
    device: str,
) -> list[np.ndarray]:
    from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler

    s = model.config.schedule
    scheduler = DPMSolverMultistepScheduler(
        beta_start=s.beta_start,
        beta_end=s.beta_end,
        beta_schedule="scaled_linear",
        num_train_timesteps=s.num_train_timesteps,
        steps_offset=s.steps_offset,
        timestep_spacing="leading",
        algorithm_type="dpmsolver++",
        solver_order=2,
        prediction_type=s.prediction_type,
    )
    scheduler.set_timesteps(steps, device=device)
    fitted, placements = zip(*(fit(img, model.config.resolution) for img in images))
    dtype = next(model.parameters()).dtype
    pixels = torch.from_numpy(to_float(np.stack(fitted))).to(device, dtype)
    batch = pixels.shape[0]
    generator = torch.Generator().manual_seed(seed)
    y0 = model.encode(pixels)
    noise = torch.randn(y0.shape, generator=generator).to(device, dtype)
    ab = scheduler.alphas_cumprod[t_cond].item()
    y_t = ab**0.5 * y0 + (1 - ab) ** 0.5 * torch.randn(y0.shape, generator=generator).to(device, dtype)
    positive = model.context("restore", model.face(pixels), batch)
    negative = model.context("negative", None, batch)
    x = noise
    for t in scheduler.timesteps:
        timestep = torch.cat([t.repeat(batch), torch.full((batch,), t_cond, device=device)]).float()
        phi_t = torch.tensor([phi], device=device, dtype=dtype)
        eps = []
        for ctx in (positive, negative):  # two separate calls, each the joint [x; y] graph
            out = model.unet(torch.cat([x, y_t]), timestep, torch.cat([ctx, ctx]), phi_t)
            eps.append(out[:batch])
        guided = eps[1] + guidance * (eps[0] - eps[1])
        x = scheduler.step(guided, t, x).prev_sample
    decoded = model.decode(x).float().cpu().numpy()
    return [unfit(img, p) for img, p in zip(to_uint8(decoded), placements)]


def time_baseline(
    model: FlipNet,
    images: Sequence[np.ndarray],
    *,
    steps: int,
    guidance: float,
    warmup: int,
    iters: int,
    device: str = "cpu",
    dtype: str | None = None,
) -> dict[str, float]:
    """End-to-end p50/p90/p99 in ms of the naive loop on ``device`` in ``dtype`` (None: the weights'
    dtype). The weights move there once, before the warm-up (no transfer is timed), and back where
    they were after the last timed call."""
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    times = []
    with placed(model, device, dtype):
        for _ in range(warmup):
            naive_restore(model, images, steps=steps, guidance=guidance, device=device)
        for _ in range(iters):
            sync()
            start = time.perf_counter()
            naive_restore(model, images, steps=steps, guidance=guidance, device=device)
            sync()
            times.append(time.perf_counter() - start)
    return {q: 1e3 * float(np.percentile(times, int(q[1:]))) for q in ("p50", "p90", "p99")}
