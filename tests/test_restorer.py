"""Restorer on the torch backend: shapes, seeds, guidance batching, strength, condition cache."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import face_like, restorer_latents

from flipnet_rt.config.options import SamplingOptions, image_seed
from flipnet_rt.sampling import SamplerKind


@pytest.fixture(scope="module")
def options(tiny_config):
    return SamplingOptions.from_config(tiny_config, steps=4)


class UNetCalls:
    """Records (network, batch) of every UNet network call the Restorer makes."""

    def __init__(self, restorer):
        self.backend = restorer.backend
        self.calls: list[tuple[str, int]] = []

    def __enter__(self):
        original = type(self.backend).run

        def run(backend, network, feeds):
            if network.startswith("unet"):
                self.calls.append((network, feeds["sample"].shape[0]))
            return original(backend, network, feeds)

        self.backend.run = run.__get__(self.backend)
        return self

    def __exit__(self, *exc):
        del self.backend.run

    @property
    def sizes(self) -> list[int]:
        return [n for _, n in self.calls]


def test_restore_keeps_size_and_dtype(tiny_restorer, options):
    images = [face_like(64, 0), face_like(64, 1)[:40], face_like(100, 2)]
    out = tiny_restorer.restore(images, options)
    assert [o.shape for o in out] == [i.shape for i in images]
    assert all(o.dtype == np.uint8 for o in out)


def test_same_seed_same_image_other_seed_other_image(tiny_restorer, options):
    img = [face_like(64, 3)]
    a = tiny_restorer.restore(img, options)[0]
    b = tiny_restorer.restore(img, options)[0]
    c = tiny_restorer.restore(img, dataclasses.replace(options, seed=1))[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_result_does_not_depend_on_batch_company(tiny_restorer, options):
    images = [face_like(64, i) for i in range(3)]
    seeds = [image_seed(0, i) for i in range(3)]
    together = tiny_restorer.restore(images, options, seeds)
    alone = tiny_restorer.restore(images[1:2], options, seeds[1:2])[0]
    diff = np.abs(together[1].astype(int) - alone.astype(int)).max()
    print(f"batched vs alone: max uint8 difference {diff}")
    # Only the float summation order can differ with the batch size: at most one grey level.
    assert diff <= 1


def test_guidance_is_one_call_with_both_branches(tiny_restorer, options):
    with UNetCalls(tiny_restorer) as calls:
        tiny_restorer.restore([face_like(64)] * 2, options)
    # condition K/V once for both branches, then the input half of both branches per step
    assert calls.calls == [("unet_cond", 2 * 2)] + [("unet_input", 2 * 2)] * options.steps
    with UNetCalls(tiny_restorer) as calls:
        tiny_restorer.restore([face_like(64)] * 2, dataclasses.replace(options, guidance=1.0))
    assert calls.calls == [("unet_cond", 2)] + [("unet_input", 2)] * options.steps


def test_joint_path_batches_both_streams_and_branches(tiny_restorer, options):
    joint = tiny_restorer.variant(cond_cache=False)
    with UNetCalls(joint) as calls:
        joint.restore([face_like(64)] * 2, options)
    assert calls.calls == [("unet", 2 * 2 * 2)] * options.steps  # [input x 2 branches; condition x 2]


def test_condition_cache_matches_the_joint_graph(tiny_restorer, options):
    images = [face_like(64, 7), face_like(64, 8)]
    joint = restorer_latents(tiny_restorer.variant(cond_cache=False), images, options)
    cached = restorer_latents(tiny_restorer, images, options)
    rel = float(((cached - joint) ** 2).sum() ** 0.5 / (joint**2).sum() ** 0.5)
    print(f"condition cache vs joint: relative L2 {rel:.2e}")
    # exact up to float32 rounding: the halves run at batch B instead of 2B
    assert rel < 1e-5


def test_degrade_skips_guidance(tiny_restorer, options):
    with UNetCalls(tiny_restorer) as calls:
        out = tiny_restorer.degrade([face_like(64)] * 3, options)
    assert calls.sizes == [3] * (options.steps + 1)
    assert len(out) == 3 and out[0].shape == (64, 64, 3)


def test_strength_runs_fewer_steps_from_the_condition(tiny_restorer, options):
    opts = dataclasses.replace(options, steps=10, strength=0.3)
    with UNetCalls(tiny_restorer) as calls:
        tiny_restorer.restore([face_like(64)], opts)
    assert [n for n, _ in calls.calls].count("unet_input") == 3


@pytest.mark.parametrize("sampler", list(SamplerKind))
def test_every_sampler_runs(tiny_restorer, options, sampler):
    eta = 1.0 if sampler is SamplerKind.DDIM else 0.0
    opts = dataclasses.replace(options, sampler=sampler, eta=eta)
    a = tiny_restorer.restore([face_like(64)], opts)[0]
    assert np.array_equal(a, tiny_restorer.restore([face_like(64)], opts)[0]), "seeded, eta noise included"


def test_phi_reaches_boosthub(tiny_restorer, options):
    img = [face_like(64, 5)]
    a = tiny_restorer.restore(img, dataclasses.replace(options, phi=0.0))[0]
    b = tiny_restorer.restore(img, dataclasses.replace(options, phi=2.0))[0]
    assert not np.array_equal(a, b)


def test_color_fix_takes_the_colours_of_the_input(tiny_restorer, options):
    """random:tiny's output has nothing to do with its input; 3 levels of colour fix give it the
    input's low band, so the mean colour follows the input (up to the blur's edge replication)."""
    img = face_like(64, 6)
    plain = tiny_restorer.restore([img], options)[0].astype(float)
    fixed = tiny_restorer.restore([img], dataclasses.replace(options, color_fix=3))[0].astype(float)
    mean_in = img.reshape(-1, 3).mean(0)
    d_plain = np.abs(plain.reshape(-1, 3).mean(0) - mean_in).max()
    d_fixed = np.abs(fixed.reshape(-1, 3).mean(0) - mean_in).max()
    print(f"mean colour off the input's by {d_plain:.2f} grey levels, {d_fixed:.2f} with the colour fix")
    assert d_fixed < 0.25 * d_plain


def test_color_fix_leaves_degradation_alone(tiny_restorer, options):
    img = [face_like(64, 7)]
    a = tiny_restorer.degrade(img, options)[0]
    assert np.array_equal(a, tiny_restorer.degrade(img, dataclasses.replace(options, color_fix=3))[0])


@pytest.mark.parametrize(
    "change, field",
    [
        ({"t_cond": 1000}, "t_cond"),
        ({"steps": 0}, "steps"),
        ({"strength": 0.0}, "strength"),
        ({"eta": 0.5}, "eta"),
        ({"color_fix": -1}, "color_fix"),
        ({"color_fix": 11}, "color_fix"),
    ],
)
def test_bad_options_name_the_field(tiny_config, change, field):
    with pytest.raises(ValueError, match=field):
        SamplingOptions.from_config(tiny_config, **change)


def test_image_seed_streams_are_distinct():
    seeds = {image_seed(s, i, v) for s in range(3) for i in range(50) for v in range(3)}
    assert len(seeds) == 450 and all(0 <= s < 2**63 for s in seeds)
    torch.Generator().manual_seed(max(seeds))  # accepted by torch


def test_options_accept_strings_as_the_command_line_passes_them(tiny_config):
    opts = SamplingOptions.from_config(tiny_config, sampler="ddim", spacing="trailing", eta=1.0)
    assert opts.sampler is SamplerKind.DDIM and opts.eta == 1.0
    with pytest.raises(ValueError, match="sampler: 'plms' is not one of ddim, dpmpp-2m, euler"):
        SamplingOptions.from_config(tiny_config, sampler="plms")
