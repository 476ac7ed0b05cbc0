"""Diffusion sampling: noise schedules, timestep grids and stateless samplers.

numpy and the standard library only: the same functions drive numpy arrays (ONNX Runtime
backend) and torch tensors (torch backend) through arithmetic operators alone.
"""

from .samplers import (
    Callback,
    Denoiser,
    NoiseLike,
    Prediction,
    ddim_step,
    dpmpp_2m_step,
    euler_step,
    parameterized,
    sample,
    sample_ddim,
    sample_dpmpp_2m,
    sample_euler,
)
from .schedule import (
    Grid,
    PredictionType,
    SamplerKind,
    ScheduleConfig,
    Spacing,
    make_grid,
    q_sample,
)

__all__ = [
    "Callback",
    "Denoiser",
    "Grid",
    "NoiseLike",
    "Prediction",
    "PredictionType",
    "SamplerKind",
    "ScheduleConfig",
    "Spacing",
    "ddim_step",
    "dpmpp_2m_step",
    "euler_step",
    "make_grid",
    "parameterized",
    "q_sample",
    "sample",
    "sample_ddim",
    "sample_dpmpp_2m",
    "sample_euler",
]
