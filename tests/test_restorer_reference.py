"""The Restorer's sampling loop against an independent reference (issue 19, holes 1 and 2).

Every cross-check elsewhere (torch vs ONNX Runtime, cache vs joint, ``verify``) runs the same
Restorer code on both sides, so a wrong guidance formula or a wrong img2img start moves both
sides together. Here the networks are :class:`KnownBackend`, a real implementation of the
:class:`~flipnet_rt.backends.base.Backend` interface whose networks are small closed-form numpy
functions, and the expected latents are recomputed in this file from those functions, the
paper's formulas and numpy generators seeded like the Restorer's:

* classifier-free guidance ``eps = u + s (c - u)`` (conditional branch: restore prompt + the face
  encoder's id tokens; unconditional: negative prompt + zeros);
* the condition stream ``y_t = q_sample(y0, noise_y, ab[t_cond])`` feeding the UNet's K/V;
* ``strength < 1``: the first UNet input is ``q_sample(y0, noise_x, ab[t0])``; 1: pure noise.

The sampler step itself comes from :mod:`flipnet_rt.sampling` (checked against diffusers in
tests/sampling); the schedule is recomputed here from its definition (scaled-linear betas).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from helpers import face_like, restorer_latents

from flipnet_rt.backends.base import Backend
from flipnet_rt.config.options import Mode
from flipnet_rt.engine.spec import KVSpec, NetworkSpec, network_specs
from flipnet_rt.runtime.restorer import Restorer
from flipnet_rt.sampling import SamplerKind, make_grid, parameterized, sample

KV_CHANNELS = 8


# ----------------------------------------------------------------------------- the known networks
# Closed-form stand-ins for the networks, float64 in, float32 out; each depends on every input
# the Restorer is supposed to feed, so a wrong feed changes the result.


def enc(image: np.ndarray, f: int) -> np.ndarray:
    """image [B, 3, fh, fw] -> latent [B, 4, h, w]: average pooling, the 4th channel the grey mean."""
    b, _, hh, ww = image.shape
    pooled = image.reshape(b, 3, hh // f, f, ww // f, f).mean(axis=(3, 5))
    return 0.8 * np.concatenate([pooled, pooled.mean(axis=1, keepdims=True)], axis=1)


def dec(latent: np.ndarray, f: int) -> np.ndarray:
    """latent [B, 4, h, w] -> image [B, 3, fh, fw] in [-1, 1]."""
    return np.tanh(latent[:, :3]).repeat(f, axis=2).repeat(f, axis=3)


def face(image: np.ndarray, tokens: int, width: int) -> np.ndarray:
    """image [B, 3, R, R] -> id tokens [B, N, D]: the image's mean + 0.5 everywhere."""
    return np.broadcast_to(image.mean(axis=(1, 2, 3))[:, None, None] + 0.5, (image.shape[0], tokens, width))


def cond_kv(y: np.ndarray, t: np.ndarray, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Condition stream -> (K [B, h*w, C], V [B, h*w, C]); depends on y, its timestep and the context."""
    b = y.shape[0]
    k = y.mean(axis=1).reshape(b, -1)[:, :, None] + 1e-3 * t[:, None, None] + np.zeros(KV_CHANNELS)
    v = np.broadcast_to(context.mean(axis=(1, 2))[:, None, None], k.shape) + 0.0
    return k, v


def eps(x: np.ndarray, t: np.ndarray, context: np.ndarray, phi: float, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Input stream -> noise prediction [B, 4, h, w]; the K/V enter through phi (as BoostHub's)."""
    b, c, h, w = x.shape
    ctx = context.mean(axis=(1, 2))[:, None, None, None] * np.arange(1, c + 1)[None, :, None, None]
    boost = k.mean(axis=2).reshape(b, 1, h, w) + v.mean(axis=(1, 2))[:, None, None, None]
    return 0.5 * x + 0.3 * ctx + 2e-4 * t[:, None, None, None] + 0.4 * phi * boost


class KnownBackend(Backend):
    """A numpy backend whose networks are the closed-form functions above; records every call."""

    name = "known"

    def __init__(self, config) -> None:
        super().__init__(network_specs(config, [KVSpec(level=0, channels=KV_CHANNELS)]))
        self.config = config
        self.calls: list[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def _run(self, spec: NetworkSpec, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        c = self.config
        f = {k: np.asarray(v, np.float64) for k, v in feeds.items()}
        if spec.name == "vae_encoder":
            out = {"latent": enc(f["image"], c.vae_factor)}
        elif spec.name == "vae_decoder":
            out = {"image": dec(f["latent"], c.vae_factor)}
        elif spec.name == "face_encoder":
            out = {"id_tokens": face(f["image"], c.face.tokens, c.text_width)}
        elif spec.name == "unet_cond":
            out = dict(zip(("k_00", "v_00"), cond_kv(f["sample"], f["timestep"], f["context"])))
        elif spec.name == "unet_input":
            out = {
                "noise_pred": eps(f["sample"], f["timestep"], f["context"], float(f["phi"][0]), f["k_00"], f["v_00"])
            }
        else:  # the joint graph: [input; condition] halves, the condition's K/V feed the input half
            n = f["sample"].shape[0] // 2
            k, v = cond_kv(f["sample"][n:], f["timestep"][n:], f["context"][n:])
            x_out = eps(f["sample"][:n], f["timestep"][:n], f["context"][:n], float(f["phi"][0]), k, v)
            out = {"noise_pred": np.concatenate([x_out, np.zeros_like(x_out)])}
        out = {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}
        self.calls.append((spec.name, {k: np.array(v) for k, v in feeds.items()}, out))
        return out

    def close(self) -> None:
        """Nothing to free: the networks are formulas."""

    def from_numpy(self, array: np.ndarray, dtype: str | None = None) -> np.ndarray:
        array = np.asarray(array)
        if dtype is not None or np.issubdtype(array.dtype, np.floating):
            array = array.astype(dtype or "float32")
        return array

    def to_numpy(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array)

    def concat(self, arrays: Sequence[np.ndarray], axis: int = 0) -> np.ndarray:
        return np.concatenate(arrays, axis=axis)

    def outputs(self, network: str) -> list[dict[str, np.ndarray]]:
        return [out for name, _, out in self.calls if name == network]

    def feeds(self, network: str) -> list[dict[str, np.ndarray]]:
        return [feeds for name, feeds, _ in self.calls if name == network]


# ----------------------------------------------------------------------------- the reference


def alphas_cumprod(config) -> np.ndarray:
    """Scaled-linear schedule (Stable Diffusion's), from its definition."""
    s = config.schedule
    betas = np.linspace(s.beta_start**0.5, s.beta_end**0.5, s.num_train_timesteps, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def draws(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """An image's two noise draws, in the Restorer's order: the input stream's, then the condition's."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32)


def reference_latents(backend: KnownBackend, prompts, options, seeds, mode: Mode) -> np.ndarray:
    """The expected sampled latents, from the recorded encoder outputs and the formulas above."""
    config = backend.config
    ab = alphas_cumprod(config)
    y0 = backend.outputs("vae_encoder")[-1]["latent"].astype(np.float64)
    batch = y0.shape[0]
    noise = [draws(s, y0.shape[1:]) for s in seeds]
    noise_x = np.stack([n[0] for n in noise]).astype(np.float64)
    noise_y = np.stack([n[1] for n in noise]).astype(np.float64)
    y_t = np.sqrt(ab[options.t_cond]) * y0 + np.sqrt(1 - ab[options.t_cond]) * noise_y  # Eq. (1)
    zeros = np.zeros((batch, config.face.tokens, config.text_width))

    def context(prompt: str, ids: np.ndarray) -> np.ndarray:
        return np.concatenate([np.broadcast_to(prompts[prompt], (batch, *prompts[prompt].shape)), ids], axis=1)

    if mode is Mode.RESTORE:
        ids = backend.outputs("face_encoder")[-1]["id_tokens"].astype(np.float64)
        branches = [context("restore", ids), context("negative", zeros)]
    else:
        branches = [context("degrade", zeros)]
    t_cond = np.full(batch, float(options.t_cond))

    def branch(x: np.ndarray, t: int, ctx: np.ndarray) -> np.ndarray:
        k, v = cond_kv(y_t, t_cond, ctx)
        return eps(x, np.full(batch, float(t)), ctx, options.phi, k, v)

    def network(x, t):
        c = branch(x, t, branches[0])
        if mode is Mode.DEGRADE or options.guidance == 1.0:
            return c
        u = branch(x, t, branches[1])
        return u + options.guidance * (c - u)  # classifier-free guidance

    grid = make_grid(ab_schedule(config), options.sampler, options.steps, options.spacing, options.strength)
    t0 = int(grid.timesteps[0])
    x = noise_x if options.strength >= 1.0 else np.sqrt(ab[t0]) * y0 + np.sqrt(1 - ab[t0]) * noise_x
    denoiser = parameterized(network, ab, config.schedule.prediction_type)
    return sample(options.sampler, denoiser, x, grid)


def ab_schedule(config):
    from flipnet_rt.config.options import schedule_config

    return schedule_config(config)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ----------------------------------------------------------------------------- tests

PROMPTS = {  # [77, D] each: distinct known values, so every branch's context is recognisable
    "restore": np.linspace(-0.2, 0.6, 77 * 64, dtype=np.float32).reshape(77, 64),
    "negative": np.full((77, 64), -0.35, np.float32),
    "degrade": np.full((77, 64), 0.15, np.float32),
}
IMAGES = [face_like(64, 11), face_like(64, 12)]
SEEDS = [101, 202]
# float32 arithmetic in the Restorer vs float64 here over a few steps: measured ~1e-7 relative L2;
# the broken variants of issue 19 move the result by > 1e-2.
TOLERANCE = 1e-5


@pytest.fixture()
def known(tiny_config):
    def make(cond_cache: bool = True) -> tuple[KnownBackend, Restorer]:
        backend = KnownBackend(tiny_config)
        return backend, Restorer(backend, tiny_config, PROMPTS, cond_cache=cond_cache)

    return make


@pytest.mark.parametrize("cond_cache", [True, False], ids=["cached", "joint"])
@pytest.mark.parametrize("guidance", [1.5, 3.0, 1.0])
def test_guided_restore_is_u_plus_s_times_c_minus_u(known, cond_cache, guidance):
    backend, restorer = known(cond_cache)
    options = restorer.options(steps=4, guidance=guidance, phi=0.7, t_cond=25)
    got = restorer_latents(restorer, IMAGES, options, SEEDS)
    want = reference_latents(backend, PROMPTS, options, SEEDS, Mode.RESTORE)
    err = rel_l2(got, want)
    print(f"guidance {guidance} ({'cache' if cond_cache else 'joint'}): relative L2 to the reference {err:.2e}")
    assert err < TOLERANCE


@pytest.mark.parametrize("sampler", list(SamplerKind))
def test_each_sampler_matches_the_reference(known, sampler):
    backend, restorer = known()
    options = restorer.options(steps=3, sampler=sampler, spacing="trailing", guidance=2.0)
    got = restorer_latents(restorer, IMAGES, options, SEEDS)
    err = rel_l2(got, reference_latents(backend, PROMPTS, options, SEEDS, Mode.RESTORE))
    print(f"{sampler.value}: relative L2 to the reference {err:.2e}")
    assert err < TOLERANCE


def test_degrade_uses_the_degrade_prompt_without_guidance(known):
    backend, restorer = known()
    options = restorer.options(steps=3, guidance=2.5, t_cond=10)
    got = restorer_latents(restorer, IMAGES, options, SEEDS, mode=Mode.DEGRADE)
    err = rel_l2(got, reference_latents(backend, PROMPTS, options, SEEDS, Mode.DEGRADE))
    print(f"degrade: relative L2 to the reference {err:.2e}")
    assert err < TOLERANCE
    assert not backend.outputs("face_encoder"), "degradation needs no id tokens"


@pytest.mark.parametrize("strength", [0.3, 0.55, 1.0])
def test_strength_starts_from_the_noised_condition(known, tiny_config, strength):
    """The first UNet input: ``q_sample(y0, noise, ab[t0])`` for strength < 1, pure noise for 1."""
    backend, restorer = known()
    options = restorer.options(steps=10, strength=strength, guidance=1.0, sampler="ddim")
    got = restorer_latents(restorer, IMAGES, options, SEEDS)

    first = backend.feeds("unet_input")[0]
    t0 = int(first["timestep"][0])
    y0 = backend.outputs("vae_encoder")[0]["latent"]
    noise_x = np.stack([draws(s, y0.shape[1:])[0] for s in SEEDS])
    ab = alphas_cumprod(tiny_config)
    want = noise_x if strength == 1.0 else np.sqrt(ab[t0]) * y0 + np.sqrt(1 - ab[t0]) * noise_x
    err = float(np.abs(first["sample"] - want).max())
    print(f"strength {strength}: t0 = {t0}, {len(backend.feeds('unet_input'))} steps, first input max-abs {err:.2e}")
    assert err < 1e-5  # float32 rounding of one multiply-add
    # diffusers' img2img (get_timesteps): the last int(strength * steps) steps of the full grid,
    # here DDIM's leading grid 901, 801, ..., 1 (steps_offset 1)
    kept = int(strength * 10)
    full = [901 - 100 * i for i in range(10)]
    assert [int(f["timestep"][0]) for f in backend.feeds("unet_input")] == full[10 - kept :]
    assert rel_l2(got, reference_latents(backend, PROMPTS, options, SEEDS, Mode.RESTORE)) < TOLERANCE


def test_results_do_not_depend_on_the_backend_state_between_calls(known):
    """Two calls on one Restorer: the second sees fresh noise from its seeds, not the first's."""
    backend, restorer = known()
    options = restorer.options(steps=2)
    a = restorer_latents(restorer, IMAGES, options, SEEDS)
    b = restorer_latents(restorer, IMAGES[::-1], options, SEEDS[::-1])
    np.testing.assert_allclose(a, b[::-1], rtol=0, atol=1e-6)


def test_restore_decodes_the_sampled_latents(known, tiny_config):
    backend, restorer = known()
    options = dataclasses.replace(restorer.options(steps=2), color_fix=0)
    out = restorer.restore(IMAGES, options, SEEDS)
    latents = restorer_latents(restorer, IMAGES, options, SEEDS)
    want = np.rint(np.clip((dec(latents.astype(np.float64), tiny_config.vae_factor) + 1) * 127.5, 0, 255))
    for got, expected in zip(out, want.transpose(0, 2, 3, 1)):
        assert got.shape == (64, 64, 3) and got.dtype == np.uint8
        assert np.abs(got.astype(int) - expected).max() <= 1  # float32 vs float64 rounding at .5
