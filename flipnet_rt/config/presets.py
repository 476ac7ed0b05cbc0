"""Named model configurations: ``sd21-base`` (the paper's) and ``tiny`` (tests and CPU).

``random:<name>`` model specs build one of these with seeded random weights.
"""

from __future__ import annotations

from ..sampling import PredictionType
from .model import FaceSpec, FlipnetConfig, ScheduleSpec

# Stable Diffusion 2.1-base, unet/config.json and vae/config.json (diffusers layout).
SD21_BASE_UNET = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "upcast_attention": False,
    "use_linear_projection": True,
}

SD21_BASE_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# About 3M parameters in all: runs a 64x64 restore in well under a second on one CPU core.
TINY_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 2,
    "block_out_channels": [32, 64, 64],
    "cross_attention_dim": 64,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "in_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "out_channels": 4,
    "sample_size": 8,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": True,
}

TINY_VAE = {
    "act_fn": "silu",
    "block_out_channels": [32, 32, 64, 64],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "out_channels": 3,
    "sample_size": 64,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}


# A mid-size model (~20M parameters) at 128x128: CPU profiling between tiny and sd21-base.
SMALL_UNET = {
    "act_fn": "silu",
    "attention_head_dim": [2, 4, 8],
    "block_out_channels": [64, 128, 256],
    "cross_attention_dim": 256,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "in_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 16,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": True,
}

SMALL_VAE = {**TINY_VAE, "block_out_channels": [32, 64, 128, 128], "norm_num_groups": 32, "sample_size": 128}


# The shipped demo model (``models/demo``, issue 7): 64x64 faces with a 2x VAE (32x32x4 latents).
# Measured on LFW (300 steps each): an 8x VAE (the tiny one) or a 4x VAE reconstructs faces at about
# 21 dB, no better than the degraded input (21.1 dB), while the 2x VAE was at 23.5 dB and climbing.
# Every UNet level has attention, so BoostHub reaches the condition at the latent's full 32x32
# resolution: without it (first level DownBlock2D) the model's one-step x0 estimate at t = 900 was
# 19.2 dB on LFW val, what the LQ itself gives at 8x8 (the coarse structure only), and sampling from
# noise scored 15-16 dB against the input's 21.3. One head at 32x32 (32 channels); 1.6x the step
# time (1.39 s vs 0.87 s per batch of 8 on 2 CPU cores). About 4.5M parameters.
DEMO_UNET = {
    **TINY_UNET,
    "attention_head_dim": [1, 4, 4],
    "block_out_channels": [32, 64, 128],
    "cross_attention_dim": 64,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3,
    "up_block_types": ["CrossAttnUpBlock2D"] * 3,
    "norm_num_groups": 16,
    "sample_size": 32,
}

DEMO_VAE = {
    **TINY_VAE,
    "block_out_channels": [32, 64],
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "latent_channels": 4,
    "layers_per_block": 1,
    "mid_block_add_attention": False,  # attention over 32x32 latents cost more than the rest of the VAE
    "norm_num_groups": 16,
}


def sd21_base() -> FlipnetConfig:
    """The paper's model: SD 2.1-base at 512x512, 16x16 id tokens of width 256 (N = 256)."""
    return FlipnetConfig(
        name="sd21-base",
        resolution=512,
        unet=SD21_BASE_UNET,
        vae=SD21_BASE_VAE,
        face=FaceSpec(grid=16, dim=256, channels=(64, 128, 256, 256, 256, 256), adapter_hidden=1024),
    ).validate()


def tiny() -> FlipnetConfig:
    """A few million parameters at 64x64, 4x4 id tokens: for tests and the CPU."""
    return FlipnetConfig(
        name="tiny",
        resolution=64,
        unet=TINY_UNET,
        vae=TINY_VAE,
        face=FaceSpec(grid=4, dim=32, channels=(16, 32, 32, 64, 64), adapter_hidden=64),
        lora_rank=4,
    ).validate()


def small() -> FlipnetConfig:
    """A mid-size model at 128x128, 8x8 id tokens: CPU profiling and small trained models."""
    return FlipnetConfig(
        name="small",
        resolution=128,
        unet=SMALL_UNET,
        vae=SMALL_VAE,
        face=FaceSpec(grid=8, dim=64, channels=(32, 64, 128, 128, 128), adapter_hidden=256),
        lora_rank=16,
    ).validate()


def demo() -> FlipnetConfig:
    """The shipped demo model's architecture: 64x64, a 2x VAE, 4x4 id tokens, v-prediction.

    v-prediction (DESIGN §3 allows it) keeps the x0 estimate of Eq. (3) bounded at large t, where
    eps-prediction divides by sqrt(alpha_bar) (0.07 at t = 999): the image-level loss of Eq. (8)
    and few-step sampling both depend on that estimate.
    """
    return FlipnetConfig(
        name="demo",
        resolution=64,
        schedule=ScheduleSpec(prediction_type=PredictionType.V_PREDICTION),
        unet=DEMO_UNET,
        vae=DEMO_VAE,
        face=FaceSpec(grid=4, dim=32, channels=(16, 32, 32, 64, 64), adapter_hidden=64),
        lora_rank=4,
    ).validate()


PRESETS = {"sd21-base": sd21_base, "small": small, "tiny": tiny, "demo": demo}


def preset(name: str) -> FlipnetConfig:
    """The named configuration; the error lists the known names."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise KeyError(f"unknown model config {name!r}; known: {', '.join(sorted(PRESETS))}") from None
