"""Loss terms: association CE (Eq. 6), PatchGAN objectives, VGG19 loading from local safetensors."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from flipnet_rt.train.config import AdversarialLoss
from flipnet_rt.train.losses import (
    PatchDiscriminator,
    association_loss,
    discriminator_loss,
    generator_loss,
    perceptual_loss,
)
from flipnet_rt.train.vgg import LAYER_NAMES, VGG19Features, load_vgg19


def test_association_loss_rewards_matching_patches():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 16, 32, generator=g)
    ce_h, ce_l = association_loss(tokens, tokens, temperature=0.07)
    shuffled = tokens[:, torch.randperm(16, generator=g)]
    bad_h, bad_l = association_loss(tokens, shuffled, temperature=0.07)
    assert ce_h < 0.05 and ce_l < 0.05, (ce_h, ce_l)  # each patch's partner is itself
    assert bad_h > 1.0 and bad_l > 1.0
    uniform = association_loss(torch.ones(1, 16, 8), torch.ones(1, 16, 8), 1.0)[0]
    assert math.isclose(uniform.item(), math.log(16), rel_tol=1e-5)  # all patches alike: chance level


def test_association_loss_is_the_two_directions():
    g = torch.Generator().manual_seed(1)
    zx, zy = torch.randn(1, 4, 8, generator=g), torch.randn(1, 4, 8, generator=g)
    ce_h, ce_l = association_loss(zx, zy, 0.5)
    swapped_h, swapped_l = association_loss(zy, zx, 0.5)
    torch.testing.assert_close(ce_h, swapped_l)
    torch.testing.assert_close(ce_l, swapped_h)


def test_patch_discriminator_and_objectives():
    disc = PatchDiscriminator(channels=8, layers=2)
    logits = disc(torch.zeros(2, 3, 64, 64))
    assert logits.shape[:2] == (2, 1) and logits.shape[-1] > 1  # a grid of patch logits
    real, fake = torch.full((4,), 2.0), torch.full((4,), -2.0)
    assert discriminator_loss(AdversarialLoss.HINGE, real, fake) == 0  # both beyond the margin
    assert generator_loss(AdversarialLoss.HINGE, fake) == 2.0
    ns = discriminator_loss(AdversarialLoss.NON_SATURATING, real, fake)
    assert math.isclose(ns.item(), 2 * math.log1p(math.exp(-2.0)), rel_tol=1e-6)


def _random_vgg_file(path, layers=("relu1_2", "relu2_2")):
    torch.manual_seed(0)
    model = VGG19Features(layers)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_vgg19_loads_torchvision_layout(tmp_path):
    path = _random_vgg_file(tmp_path / "vgg.safetensors")
    vgg = load_vgg19(path, ["relu1_2", "relu2_2"])
    assert set(vgg.state_dict()) == {
        "features.0.weight",
        "features.0.bias",
        "features.2.weight",
        "features.2.bias",
        "features.5.weight",
        "features.5.bias",
        "features.7.weight",
        "features.7.bias",
    }
    assert LAYER_NAMES[3] == "relu1_2" and LAYER_NAMES[35] == "relu5_4" and len(LAYER_NAMES) == 37
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = x.clone().requires_grad_(True)
    loss = perceptual_loss(vgg, y, x)
    assert loss.item() == 0.0
    perceptual_loss(vgg, y + 0.1, x).backward()
    assert y.grad is not None and not any(p.requires_grad for p in vgg.parameters())


def test_vgg19_errors_name_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="--vgg19 PATH.safetensors.*--perceptual-weight 0"):
        load_vgg19("", ["relu1_2"])
    with pytest.raises(FileNotFoundError, match="--vgg19 .*nope.safetensors: no such file"):
        load_vgg19(tmp_path / "nope.safetensors", ["relu1_2"])
    path = _random_vgg_file(tmp_path / "short.safetensors", layers=("relu1_2",))
    with pytest.raises(ValueError, match="--vgg19 .*lacks"):
        load_vgg19(path, ["relu3_4"])
