"""Model directories (safetensors only), random:<config> specs, local diffusers folders."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_clip_folder

from flipnet_rt.config.model import ConfigError
from flipnet_rt.models import (
    FlipNet,
    from_diffusers,
    load_model,
    load_model_dir,
    random_model,
    save_model_dir,
)


def assert_same_tensors(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and torch.equal(sa[name], sb[name]), name


def test_round_trip_is_bitwise(tiny_model, tmp_path):
    save_model_dir(tiny_model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "face_encoder.safetensors",
        "flipnet.json",
        "prompt_embeds.safetensors",
        "unet.safetensors",
        "vae.safetensors",
    ]
    loaded = load_model_dir(tmp_path / "m")
    assert_same_tensors(tiny_model, loaded)
    assert loaded.config == tiny_model.config


def test_fp16_directory_loads_as_float32(tiny_model, tmp_path):
    save_model_dir(tiny_model, tmp_path / "h", dtype=torch.float16)
    loaded = load_model_dir(tmp_path / "h")
    w = dict(loaded.named_parameters())
    for name, p in tiny_model.named_parameters():
        assert w[name].dtype == torch.float32
        assert torch.equal(w[name], p.half().float()), name


def test_random_spec_is_seeded_and_leaves_global_rng(tiny_model):
    state = torch.random.get_rng_state()
    again = load_model("random:tiny")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert_same_tensors(tiny_model, again)
    assert all(hub.out.weight.abs().sum() > 0 for hub in again.unet.boosthubs), "random W_O is drawn"


def test_unknown_random_config_names_the_choices():
    with pytest.raises(KeyError, match="sd21-base, small, tiny"):
        load_model("random:huge")


def test_missing_directory_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="random:<config>"):
        load_model(tmp_path / "nope")


def test_corrupt_weights_are_a_clear_error(tiny_model, tmp_path):
    save_model_dir(tiny_model, tmp_path / "m")
    (tmp_path / "m" / "vae.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="vae.safetensors: not a readable safetensors file"):
        load_model_dir(tmp_path / "m")


def test_weights_of_another_model_are_refused(tiny_model, tmp_path):
    save_model_dir(tiny_model, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "flipnet.json").read_text())
    cfg["unet"]["block_out_channels"] = [32, 64, 128]
    (tmp_path / "m" / "flipnet.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="unet.safetensors: .*different models"):
        load_model_dir(tmp_path / "m")


def test_unknown_config_field_is_refused(tiny_model, tmp_path):
    save_model_dir(tiny_model, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "flipnet.json").read_text())
    cfg["defaults"]["stepz"] = 3
    (tmp_path / "m" / "flipnet.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"flipnet.json: defaults.stepz: unknown field"):
        load_model_dir(tmp_path / "m")


def test_lora_must_be_merged_before_saving(tmp_path):
    from flipnet_rt.models import add_lora

    model = random_model("tiny")
    add_lora(model.unet.unet, rank=2)
    with pytest.raises(ValueError, match="merge_lora"):
        save_model_dir(model, tmp_path / "m")
    assert not (tmp_path / "m" / "unet.safetensors").exists()


def test_from_diffusers_folder(tmp_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from flipnet_rt.config.presets import TINY_UNET, TINY_VAE, tiny

    torch.manual_seed(4)
    base_unet = UNet2DConditionModel(**TINY_UNET)
    base_unet.save_pretrained(tmp_path / "sd" / "unet", safe_serialization=True)
    AutoencoderKL(**TINY_VAE).save_pretrained(tmp_path / "sd" / "vae", safe_serialization=True)
    tiny_clip_folder(tmp_path / "sd")

    model = from_diffusers(tmp_path / "sd", tiny())
    assert isinstance(model, FlipNet)
    base = base_unet.state_dict()
    loaded = model.unet.unet.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in base.items()), "pretrained UNet weights"
    modules = dict(model.unet.unet.named_modules())
    for name, proc in model.unet.unet.attn_processors.items():
        layer = name.removesuffix(".processor")
        if layer.endswith("attn1"):
            assert torch.equal(proc.q_x.weight, modules[layer].to_q.weight)  # Eq. (4) init from pretrained
            assert not proc.out.weight.any()
    for kind in ("restore", "negative", "degrade"):
        assert model.prompt(kind).shape == (77, 64) and model.prompt(kind).abs().sum() > 0
    assert not torch.equal(model.prompt("restore"), model.prompt("degrade"))
    save_model_dir(model, tmp_path / "m")  # the starting point of training is a valid model directory
    assert_same_tensors(model, load_model_dir(tmp_path / "m"))


def test_from_diffusers_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="local diffusers Stable Diffusion folder"):
        from_diffusers(tmp_path)
