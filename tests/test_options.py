"""SamplingOptions: defaults taken from the model's config, the bounds of every option, and error
messages that name the option, the value and the allowed range (issue 19: mutation survivors)."""

from __future__ import annotations

import dataclasses

import pytest

from flipnet_rt.config.options import MAX_COLOR_FIX_LEVELS, SamplingOptions, schedule_config
from flipnet_rt.config.presets import tiny
from flipnet_rt.sampling import PredictionType, SamplerKind, ScheduleConfig, Spacing

CONFIG = tiny()
T = CONFIG.schedule.num_train_timesteps


def test_unknown_sampler_and_spacing_list_the_choices():
    with pytest.raises(ValueError) as exc:
        SamplingOptions(sampler="plms")
    assert str(exc.value) == "sampler: 'plms' is not one of ddim, dpmpp-2m, euler"
    with pytest.raises(ValueError) as exc:
        SamplingOptions(spacing="cosine")
    assert str(exc.value) == "spacing: 'cosine' is not one of leading, trailing, linspace"
    assert SamplingOptions(sampler="euler", spacing="trailing").sampler is SamplerKind.EULER


def test_from_config_takes_every_default_from_the_model():
    defaults = dataclasses.replace(
        CONFIG.defaults,
        steps=7,
        sampler="ddim",
        spacing="trailing",
        guidance=2.5,
        phi=0.25,
        t_cond=3,
        eta=0.3,
        strength=0.6,
        color_fix=2,
    )
    config = dataclasses.replace(CONFIG, defaults=defaults)
    got = SamplingOptions.from_config(config)
    assert got == SamplingOptions(
        sampler=SamplerKind.DDIM,
        steps=7,
        spacing=Spacing.TRAILING,
        guidance=2.5,
        phi=0.25,
        t_cond=3,
        eta=0.3,
        strength=0.6,
        color_fix=2,
        seed=0,
    )
    # an override replaces its default; None means "not given"
    assert SamplingOptions.from_config(config, steps=3, guidance=None) == dataclasses.replace(got, steps=3)


@pytest.mark.parametrize(
    "fields",
    [
        dict(t_cond=0),
        dict(t_cond=T - 1),
        dict(steps=1),
        dict(steps=T),  # one step per training timestep: the most the message allows ("use 1 to T")
        dict(seed=0),
        dict(seed=2**63 - 1),  # the largest seed the message allows (MAX_SEED)
        dict(strength=1.0),
        dict(strength=1e-3),
        dict(eta=0.0),
        dict(eta=0.5, sampler="ddim"),
        dict(color_fix=0),
        dict(color_fix=MAX_COLOR_FIX_LEVELS),
    ],
    ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()),
)
def test_the_bounds_themselves_are_accepted(fields):
    options = SamplingOptions(**fields)
    assert options.validate(CONFIG) is options


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(t_cond=T), f"t_cond: {T} is outside [0, {T - 1}]"),
        (dict(t_cond=-1), f"t_cond: -1 is outside [0, {T - 1}]"),
        (dict(steps=0), "steps: 0; use 1 or more"),
        (dict(strength=0.0), "strength: 0.0 is outside (0, 1]"),
        (dict(strength=1.5), "strength: 1.5 is outside (0, 1]"),
        (dict(eta=-0.1, sampler="ddim"), "eta: -0.1 must be >= 0"),
        (
            dict(color_fix=MAX_COLOR_FIX_LEVELS + 1),
            f"color_fix: {MAX_COLOR_FIX_LEVELS + 1} levels is outside [0, {MAX_COLOR_FIX_LEVELS}]; 0 turns it off",
        ),
        (dict(color_fix=-1), f"color_fix: -1 levels is outside [0, {MAX_COLOR_FIX_LEVELS}]; 0 turns it off"),
        (dict(eta=0.5, sampler="euler"), "eta: 0.5 applies to the ddim sampler only; set sampler to ddim"),
        (dict(eta=1.5, sampler="dpmpp-2m"), "eta: 1.5 applies to the ddim sampler only; set sampler to ddim"),
        # issue 27: values a served request can carry that used to run the model (or fail deep in it)
        (dict(steps=T + 1), f"steps: {T + 1}; use 1 to {T} (the model's num_train_timesteps)"),
        (dict(steps=2**31 - 1), f"steps: {2**31 - 1}; use 1 to {T} (the model's num_train_timesteps)"),
        (dict(guidance=float("nan")), "guidance: nan is not a finite number"),
        (dict(guidance=float("inf")), "guidance: inf is not a finite number"),
        (dict(phi=float("-inf")), "phi: -inf is not a finite number"),
        (dict(eta=float("nan"), sampler="ddim"), "eta: nan is not a finite number"),
        (dict(strength=float("nan")), "strength: nan is not a finite number"),
        (dict(seed=-1), f"seed: -1 is outside [0, {2**63 - 1}]"),
        (dict(seed=2**63), f"seed: {2**63} is outside [0, {2**63 - 1}]"),
    ],
    ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else "",
)
def test_out_of_range_options_are_refused_with_the_range(fields, message):
    with pytest.raises(ValueError) as exc:
        SamplingOptions(**fields).validate(CONFIG)
    assert str(exc.value) == message


def test_schedule_config_carries_every_field_of_the_model_schedule():
    spec = dataclasses.replace(
        CONFIG.schedule,
        beta_start=0.001,
        beta_end=0.02,
        num_train_timesteps=500,
        steps_offset=0,
        set_alpha_to_one=True,
        prediction_type="v_prediction",
    )
    got = schedule_config(dataclasses.replace(CONFIG, schedule=spec))
    assert got == ScheduleConfig(
        beta_start=0.001,
        beta_end=0.02,
        num_train_timesteps=500,
        steps_offset=0,
        set_alpha_to_one=True,
        prediction_type=PredictionType.V_PREDICTION,
    )
    assert got.set_alpha_to_one is True and got.prediction_type is PredictionType.V_PREDICTION


def test_image_seeds_are_stable_63_bit_streams():
    """Every seeded output is reproducible across releases only if image_seed never changes: these
    values pin it. Each (seed, index, variant) is its own stream, and fits a signed 64-bit integer."""
    from flipnet_rt.config.options import image_seed

    assert image_seed(0, 0) == 7896617691693857887
    assert image_seed(7, 3) == image_seed(7, 3, 0) == 2530781778362038830
    assert image_seed(7, 3, 1) == 6665335680343557524
    assert image_seed(2**40, 10**6, 5) == 4881362840288522470
    seeds = {image_seed(s, i, v) for s in range(3) for i in range(3) for v in range(3)}
    assert len(seeds) == 27 and all(0 <= s < 2**63 for s in seeds)


def test_key_seeds_are_stable_63_bit_streams_of_the_output_path():
    """restore/degrade/cluster seeds (issue 30): pinned values; each (seed, key, variant) is its own
    stream, and the key is text (a path with POSIX separators), not a position."""
    from flipnet_rt.config.options import key_seed

    assert key_seed(0, "a.png") == key_seed(0, "a.png", 0) == 3919486721541588721
    assert key_seed(7, "sub/b_v1.png", 1) == 6983259396158227112
    assert key_seed(7, "sub/b_v1.png", 1) != key_seed(7, "sub/b_v1.png", 0) != key_seed(8, "sub/b_v1.png", 0)
    seeds = {key_seed(s, k, v) for s in range(3) for k in ("a.png", "b.png", "sub/a.png", "é.png") for v in range(3)}
    assert len(seeds) == 36 and all(0 <= s < 2**63 for s in seeds)
