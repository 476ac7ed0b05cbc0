"""Typed TOML training configs: shipped files load, unknown keys and bad types are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from flipnet_rt.train.cli import build_parser, overrides
from flipnet_rt.train.config import (
    COMMANDS,
    AeStage,
    ConfigError,
    MixedPrecision,
    RestorationTrainConfig,
    UnetTraining,
    apply_overrides,
    check,
    load_config,
    parse_value,
)

CONFIGS = Path(__file__).resolve().parents[2] / "train" / "configs"


def _command(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("command"):
            return line.split('"')[1]
    raise AssertionError(f"{path} names no command")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = check(load_config(_command(path), path))
    assert config.command in COMMANDS


def test_paper_settings():
    r = load_config("restoration", CONFIGS / "sd21_restoration.toml")
    assert (r.model.config, r.run.batch_size, r.run.steps, r.optim.lr) == ("sd21-base", 16, 90_000, 5e-5)
    s = r.restoration
    assert (s.unet_training, s.lora_rank, s.text_drop, s.id_drop, s.mse_weight, s.perceptual_weight) == (
        UnetTraining.LORA,
        64,
        0.5,
        0.3,
        1.0,
        0.01,
    )
    ae = load_config("ae", CONFIGS / "sd21_ae.toml")
    asso = load_config("ae", CONFIGS / "sd21_ae_association.toml")
    assert (ae.run.steps, ae.run.batch_size, asso.run.steps, asso.run.batch_size) == (200_000, 32, 80_000, 32)
    assert (ae.ae.perceptual_weight, ae.ae.adversarial_weight, asso.ae.stage) == (0.5, 0.8, AeStage.ASSOCIATION)
    deg = load_config("degradation", CONFIGS / "sd21_degradation.toml")
    assert [p.limit for p in deg.data.paired] == [0, 0, 1000, 1000] and deg.data.limit == 4000


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('command = "restoration"\n[restoration]\nlora_rnak = 4\n')
    with pytest.raises(ConfigError, match=r"restoration\.lora_rnak: unknown key"):
        load_config("restoration", path)
    path.write_text('command = "ae"\n[bogus]\nx = 1\n')
    with pytest.raises(ConfigError, match=r"bogus: unknown key"):
        load_config("ae", path)


def test_types_are_checked(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\nsteps = "many"\n')
    with pytest.raises(ConfigError, match=r"run\.steps: expected an integer"):
        load_config("vae", path)
    path.write_text('[run]\nmixed_precision = "fp8"\n')
    with pytest.raises(ConfigError, match=r"run\.mixed_precision: 'fp8' is not one of"):
        load_config("vae", path)
    path.write_text('[[data.paired]]\nhq_dir = "a"\n')
    with pytest.raises(ConfigError, match=r"data\.paired\[0\]\.lq_dir: missing"):
        load_config("degradation", path)


def test_file_for_another_command_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('command = "ae"\n')
    with pytest.raises(ConfigError, match="this is `flipnet-train vae`"):
        load_config("vae", path)


def test_overrides_apply_with_types():
    config = apply_overrides(
        RestorationTrainConfig(),
        {"run.steps": 7, "run.mixed_precision": "bf16", "restoration.lora_rank": 8, "data.crop_box": [1, 2, 3, 4]},
    )
    assert (config.run.steps, config.run.mixed_precision, config.restoration.lora_rank) == (7, MixedPrecision.BF16, 8)
    assert config.data.crop_box == (1, 2, 3, 4)
    with pytest.raises(ConfigError, match=r"run\.stepz: unknown key"):
        apply_overrides(config, {"run.stepz": 1})
    with pytest.raises(ConfigError, match="lora_rank"):
        check(apply_overrides(config, {"restoration.lora_rank": 0}))


def test_cli_flags_become_keys():
    args = build_parser().parse_args(
        [
            "restoration",
            "--steps",
            "5",
            "--lora-rank",
            "4",
            "--perceptual-weight",
            "0",
            "--vgg19",
            "v.safetensors",
            "--gradient-checkpointing",
            "--set",
            "optim.warmup_steps=10",
            "--set",
            "data.hq_dir=/x y",
        ]
    )
    got = overrides(args)
    assert got == {
        "run.steps": 5,
        "restoration.lora_rank": 4,
        "restoration.perceptual_weight": 0.0,
        "perceptual.vgg19": "v.safetensors",
        "run.gradient_checkpointing": True,
        "optim.warmup_steps": 10,
        "data.hq_dir": "/x y",
    }
    assert parse_value("[1, 2]") == [1, 2] and parse_value("1e-4") == 1e-4 and parse_value("a/b") == "a/b"


def test_lr_factor_warmup_then_cosine_to_zero():
    from flipnet_rt.train.loop import Warmup

    constant = Warmup(4)
    assert [constant(s) for s in (0, 3, 4, 1000)] == [0.25, 1.0, 1.0, 1.0]
    cosine = Warmup(4, total=104)
    assert cosine(0) == 0.25 and cosine(4) == 1.0
    assert cosine(54) == pytest.approx(0.5)
    assert cosine(104) == pytest.approx(0.0, abs=1e-12) and cosine(200) == pytest.approx(0.0, abs=1e-12)


def test_unknown_decay_is_refused(tmp_path):
    path = tmp_path / "vae.toml"
    path.write_text('command = "vae"\n[optim]\ndecay = "linear"\n')
    with pytest.raises(ConfigError, match="optim.decay"):
        check(load_config("vae", path))


def test_negative_t_cond_max_is_refused():
    with pytest.raises(ConfigError, match=r"restoration\.t_cond_max: -1"):
        check(apply_overrides(RestorationTrainConfig(), {"restoration.t_cond_max": -1}))
