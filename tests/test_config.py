"""flipnet.json: round trip, validation with messages that name the field."""

from __future__ import annotations

import json

import pytest

from flipnet_rt.config.model import ConfigError, FlipnetConfig
from flipnet_rt.config.presets import PRESETS, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name, tmp_path):
    config = preset(name)
    config.save(tmp_path)
    loaded = FlipnetConfig.load(tmp_path)
    assert loaded == config
    assert loaded.digest() == config.digest()


def test_sd21_base_is_the_paper_setting():
    c = preset("sd21-base")
    assert (c.resolution, c.latent_size, c.text_width, c.face.tokens, c.context_tokens) == (512, 64, 1024, 256, 333)
    assert c.unet["attention_head_dim"] == [5, 10, 20, 20] and c.unet["use_linear_projection"] is True
    assert c.latent_scaling == 0.18215 and c.defaults.guidance == 1.5 and c.defaults.phi == 1.0
    assert (c.schedule.beta_start, c.schedule.beta_end, c.schedule.prediction_type) == (0.00085, 0.012, "epsilon")


def _write(tmp_path, mutate):
    data = preset("tiny").to_dict()
    mutate(data)
    (tmp_path / "flipnet.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("resolution"), "resolution: missing required field"),
        (lambda d: d.update(colour="red"), "colour: unknown field"),
        (lambda d: d["defaults"].update(steps="many"), "defaults.steps: expected int"),
        (lambda d: d["defaults"].update(guidance=True), "defaults.guidance: expected float"),
        (lambda d: d.update(resolution=60), "resolution: 60 must be a positive multiple"),
        (lambda d: d["face"].update(grid=8), "face.channels"),
        (lambda d: d["schedule"].update(prediction_type="x0"), "schedule.prediction_type: 'x0' is not one of"),
        (lambda d: d["schedule"].update(num_train_timesteps=1), "schedule.num_train_timesteps=1; use at least 2"),
        (lambda d: d["defaults"].update(sampler="plms"), "defaults.sampler: 'plms' is not one of ddim, dpmpp-2m"),
        (lambda d: d["defaults"].update(spacing=3), "defaults.spacing: expected str"),
        (lambda d: d.update(format_version=9), "format_version"),
        (lambda d: d.update(face=[1, 2]), "face: expected an object"),
    ],
)
def test_bad_fields_are_named(tmp_path, mutate, message):
    _write(tmp_path, mutate)
    with pytest.raises(ConfigError, match=message) as exc:
        FlipnetConfig.load(tmp_path)
    assert str(tmp_path / "flipnet.json") in str(exc.value) and "\n" not in str(exc.value)


def test_invalid_json_names_the_line(tmp_path):
    (tmp_path / "flipnet.json").write_text('{"name": "x",\n oops}')
    with pytest.raises(ConfigError, match="not valid JSON .* line 2"):
        FlipnetConfig.load(tmp_path)


def test_digest_ignores_sampler_defaults_only():
    import dataclasses

    from flipnet_rt.config.presets import preset

    config = preset("tiny")
    tuned = dataclasses.replace(config, defaults=dataclasses.replace(config.defaults, steps=4, strength=0.5))
    assert tuned.digest() == config.digest()
    assert dataclasses.replace(config, latent_scaling=0.2).digest() != config.digest()


@pytest.mark.parametrize("directory", ["models/demo", "models/demo-onnx"])
def test_shipped_configs_load_and_save_byte_identical(directory, tmp_path):
    from pathlib import Path

    source = Path(__file__).parents[1] / directory / "flipnet.json"
    FlipnetConfig.load(source.parent).save(tmp_path)
    assert (tmp_path / "flipnet.json").read_bytes() == source.read_bytes()


def test_sampler_defaults_and_schedule_are_defined_once():
    """flipnet.json's sections are the runtime's types: enums in memory, their values on disk."""
    from flipnet_rt.config.model import Defaults, ScheduleSpec
    from flipnet_rt.config.options import SamplingOptions
    from flipnet_rt.sampling import SamplerKind, ScheduleConfig, Spacing

    assert ScheduleSpec is ScheduleConfig
    assert issubclass(SamplingOptions, Defaults)
    d = Defaults(sampler="ddim", spacing="trailing")
    assert d.sampler is SamplerKind.DDIM and d.spacing is Spacing.TRAILING
    data = preset("tiny").to_dict()
    assert type(data["defaults"]["sampler"]) is str and type(data["schedule"]["prediction_type"]) is str
