"""restore / degrade on the torch backend: shapes, seeds, guidance batching, strength."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from helpers import face_like
from flipnet_rt.pipeline import SamplingOptions, image_seed
from flipnet_rt.sampling import SamplerKind


@pytest.fixture(scope="module")
def options(tiny_config):
    return SamplingOptions.from_config(tiny_config, steps=4)


class UNetCalls:
    """Records the batch size of every UNet call."""

    def __init__(self, model):
        self.sizes: list[int] = []
        self._handle = model.unet.register_forward_hook(lambda m, args, out: self.sizes.append(args[0].shape[0]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.remove()


def test_restore_keeps_size_and_dtype(tiny_pipeline, options):
    images = [face_like(64, 0), face_like(64, 1)[:40], face_like(100, 2)]
    out = tiny_pipeline.restore(images, options)
    assert [o.shape for o in out] == [i.shape for i in images]
    assert all(o.dtype == np.uint8 for o in out)


def test_same_seed_same_image_other_seed_other_image(tiny_pipeline, options):
    img = [face_like(64, 3)]
    a = tiny_pipeline.restore(img, options)[0]
    b = tiny_pipeline.restore(img, options)[0]
    c = tiny_pipeline.restore(img, dataclasses.replace(options, seed=1))[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_result_does_not_depend_on_batch_company(tiny_pipeline, options):
    images = [face_like(64, i) for i in range(3)]
    seeds = [image_seed(0, i) for i in range(3)]
    together = tiny_pipeline.restore(images, options, seeds)
    alone = tiny_pipeline.restore(images[1:2], options, seeds[1:2])[0]
    diff = np.abs(together[1].astype(int) - alone.astype(int)).max()
    print(f"batched vs alone: max uint8 difference {diff}")
    # Only the float summation order can differ with the batch size: at most one grey level.
    assert diff <= 1


def test_guidance_is_one_call_with_both_branches(tiny_pipeline, options):
    with UNetCalls(tiny_pipeline.model) as calls:
        tiny_pipeline.restore([face_like(64)] * 2, options)
    assert calls.sizes == [2 * 2 * 2] * options.steps  # [input x 2 branches; condition x 2 branches]
    with UNetCalls(tiny_pipeline.model) as calls:
        tiny_pipeline.restore([face_like(64)] * 2, dataclasses.replace(options, guidance=1.0))
    assert calls.sizes == [2 * 2] * options.steps


def test_degrade_skips_guidance(tiny_pipeline, options):
    with UNetCalls(tiny_pipeline.model) as calls:
        out = tiny_pipeline.degrade([face_like(64)] * 3, options)
    assert calls.sizes == [2 * 3] * options.steps
    assert len(out) == 3 and out[0].shape == (64, 64, 3)


def test_strength_runs_fewer_steps_from_the_condition(tiny_pipeline, options):
    opts = dataclasses.replace(options, steps=10, strength=0.3)
    with UNetCalls(tiny_pipeline.model) as calls:
        tiny_pipeline.restore([face_like(64)], opts)
    assert len(calls.sizes) == 3


@pytest.mark.parametrize("sampler", list(SamplerKind))
def test_every_sampler_runs(tiny_pipeline, options, sampler):
    eta = 1.0 if sampler is SamplerKind.DDIM else 0.0
    opts = dataclasses.replace(options, sampler=sampler, eta=eta)
    a = tiny_pipeline.restore([face_like(64)], opts)[0]
    assert np.array_equal(a, tiny_pipeline.restore([face_like(64)], opts)[0]), "seeded, eta noise included"


def test_phi_reaches_boosthub(tiny_pipeline, options):
    img = [face_like(64, 5)]
    a = tiny_pipeline.restore(img, dataclasses.replace(options, phi=0.0))[0]
    b = tiny_pipeline.restore(img, dataclasses.replace(options, phi=2.0))[0]
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    "change, field",
    [({"t_cond": 1000}, "t_cond"), ({"steps": 0}, "steps"), ({"strength": 0.0}, "strength"),
     ({"eta": 0.5}, "eta")],
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
