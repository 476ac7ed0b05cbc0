"""The naive loop ``--baseline`` compares against, in the same run: how a first port would look.

PyTorch eager; the joint 2B UNet every step (no condition cache); classifier-free guidance as
two separate UNet calls; diffusers' DPMSolverMultistepScheduler for the update (with its
per-step Python state and host-side bookkeeping). Same model, same images, same steps.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from ..imaging.geometry import fit, unfit
from ..imaging.tensor import to_float, to_uint8
from ..models.flipnet import FlipNet


@torch.inference_mode()
def naive_restore(model: FlipNet, images: Sequence[np.ndarray], *, steps: int, guidance: float, phi: float = 1.0,
                  t_cond: int = 0, seed: int = 0, device: str = "cpu") -> list[np.ndarray]:
    from diffusers import DPMSolverMultistepScheduler

    s = model.config.schedule
    scheduler = DPMSolverMultistepScheduler(
        beta_start=s.beta_start, beta_end=s.beta_end, beta_schedule="scaled_linear",
        num_train_timesteps=s.num_train_timesteps, steps_offset=s.steps_offset, timestep_spacing="leading",
        algorithm_type="dpmsolver++", solver_order=2, prediction_type=s.prediction_type,
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


def time_baseline(model: FlipNet, images: Sequence[np.ndarray], *, steps: int, guidance: float, warmup: int,
                  iters: int, device: str = "cpu") -> dict[str, float]:
    """End-to-end p50/p90/p99 in ms of the naive loop."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        naive_restore(model, images, steps=steps, guidance=guidance, device=device)
    times = []
    for _ in range(iters):
        sync()
        start = time.perf_counter()
        naive_restore(model, images, steps=steps, guidance=guidance, device=device)
        sync()
        times.append(time.perf_counter() - start)
    return {q: 1e3 * float(np.percentile(times, int(q[1:]))) for q in ("p50", "p90", "p99")}
