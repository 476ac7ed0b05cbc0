"""BoostHub (Eq. 4-5): zero W_O and phi = 0 change nothing; the condition stream is independent."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0

from flipnet_rt.models import FlipNetUNet, add_boosthub, boosthub_processors
from flipnet_rt.presets import SD21_BASE_UNET, TINY_UNET


def dual_inputs(batch: int = 2, seed: int = 0, width: int = 64, tokens: int = 77 + 16):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(2 * batch, 4, 8, 8, generator=g)
    timestep = torch.tensor([500] * batch + [0] * batch)
    context = torch.randn(2 * batch, tokens, width, generator=g)
    return sample, timestep, context


@pytest.fixture(scope="module")
def plain_unet():
    torch.manual_seed(1)
    return UNet2DConditionModel(**TINY_UNET).eval()


def boosted(plain: UNet2DConditionModel, w_o_std: float | None = None) -> FlipNetUNet:
    unet = copy.deepcopy(plain)
    add_boosthub(unet)
    model = FlipNetUNet(unet).eval()
    if w_o_std is not None:
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for hub in model.boosthubs:
                hub.out.weight.copy_(torch.randn(hub.out.weight.shape, generator=g) * w_o_std)
    return model


@torch.no_grad()
def test_zero_w_o_is_bitwise_the_plain_unet(plain_unet):
    sample, timestep, context = dual_inputs()
    expected = plain_unet(sample, timestep, encoder_hidden_states=context).sample
    got = boosted(plain_unet)(sample, timestep, context, phi=1.0)
    assert torch.equal(got, expected), f"max abs diff {(got - expected).abs().max():.3e}"


@torch.no_grad()
def test_phi_zero_is_bitwise_the_plain_unet(plain_unet):
    sample, timestep, context = dual_inputs()
    expected = plain_unet(sample, timestep, encoder_hidden_states=context).sample
    model = boosted(plain_unet, w_o_std=0.05)
    got = model(sample, timestep, context, phi=0.0)
    assert torch.equal(got, expected), f"max abs diff {(got - expected).abs().max():.3e}"
    assert not torch.equal(model(sample, timestep, context, phi=1.0), expected), "BoostHub had no effect"


@torch.no_grad()
def test_condition_half_never_depends_on_the_input_half(plain_unet):
    model = boosted(plain_unet, w_o_std=0.05)
    sample, timestep, context = dual_inputs(batch=2)
    other = sample.clone()
    other[:2] = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(99))
    a = model(sample, timestep, context, phi=1.5)
    b = model(other, timestep, context, phi=1.5)
    assert torch.equal(a[2:], b[2:]), f"condition half moved by {(a[2:] - b[2:]).abs().max():.3e}"
    assert not torch.equal(a[:2], b[:2])


@torch.no_grad()
def test_input_half_depends_on_the_condition_half(plain_unet):
    model = boosted(plain_unet, w_o_std=0.05)
    sample, timestep, context = dual_inputs(batch=1)
    other = sample.clone()
    other[1:] = -other[1:]
    a, b = model(sample, timestep, context), model(other, timestep, context)
    assert (a[:1] - b[:1]).abs().max() > 1e-4


def test_initialisation_copies_projections_and_zeros_w_o(plain_unet):
    model = boosted(plain_unet)
    modules = dict(model.unet.named_modules())
    hubs = {name.removesuffix(".processor"): p for name, p in model.unet.attn_processors.items()
            if name.removesuffix(".processor").endswith("attn1")}
    assert len(hubs) == len(model.boosthubs) > 0
    for layer, hub in hubs.items():
        attn = modules[layer]
        assert torch.equal(hub.q_x.weight, attn.to_q.weight)
        assert torch.equal(hub.k_y.weight, attn.to_k.weight)
        assert torch.equal(hub.v_y.weight, attn.to_v.weight)
        assert not hub.out.weight.any()
    names = [n for n in model.unet.state_dict() if ".processor." in n]
    assert names and all(".attn1.processor." in n for n in names)
    assert not any(n.split(".")[-2] in ("to_q", "to_k", "to_v") for n in names)


def test_replacing_processors_is_detected(plain_unet):
    unet = copy.deepcopy(plain_unet)
    add_boosthub(unet)
    unet.set_attn_processor(AttnProcessor2_0())
    with pytest.raises(RuntimeError, match="not BoostHub"):
        boosthub_processors(unet)


def test_sd21_base_architecture_sizes():
    """The exact SD 2.1-base UNet: 865.9M parameters, 16 self-attentions, BoostHub +49.6M."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD21_BASE_UNET)
        base = sum(p.numel() for p in unet.parameters())
        hubs = add_boosthub(unet)
    assert base == 865_910_724
    assert len(hubs) == 16 and len(unet.attn_processors) == 32
    assert sum(p.numel() for p in unet.parameters()) - base == 49_561_600


def test_fp32_attention_is_the_same_function(tiny_model):
    """``set_attention_upcast`` (fp16 exports) changes only the precision of attention: in fp32 it
    gives what SDPA gives, for the joint pass and for every processor kind (BoostHub, cross-attention)."""
    from flipnet_rt.models.boosthub import BoostHubProcessor, Fp32AttnProcessor, set_attention_upcast

    model = copy.deepcopy(tiny_model)
    c = model.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, c.latent_channels, 8, 8, generator=g)
    t = torch.tensor([500, 20, 0, 0])
    ctx = torch.randn(4, c.text_tokens + c.face.tokens, c.text_width, generator=g)
    with torch.no_grad():
        ref = model.unet(x, t, ctx, 1.0)
        set_attention_upcast(model.unet.unet, True)
        kinds = {type(p) for p in model.unet.unet.attn_processors.values()}
        assert kinds == {BoostHubProcessor, Fp32AttnProcessor}
        assert all(h.upcast for h in model.unet.boosthubs)
        got = model.unet(x, t, ctx, 1.0)
    err = (got - ref).abs().max().item()
    print(f"fp32 attention processors vs SDPA: max-abs {err:.3g}")
    assert err < 1e-5  # float32 reassociation only
