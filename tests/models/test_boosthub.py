"""BoostHub (Eq. 4-5): zero W_O and phi = 0 change nothing; the condition stream is independent."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0

from flipnet_rt.config.presets import SD21_BASE_UNET, TINY_UNET
from flipnet_rt.models import FlipNetUNet, add_boosthub, boosthub_processors


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
    hubs = {
        name.removesuffix(".processor"): p
        for name, p in model.unet.attn_processors.items()
        if name.removesuffix(".processor").endswith("attn1")
    }
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


# ----------------------------------------------------------------------------- phi (Eq. 5), issue 19


def _hub_layer(model: FlipNetUNet):
    """The first BoostHub and its attn1 layer."""
    modules = dict(model.unet.named_modules())
    name = next(n for n in model.unet.attn_processors if n.removesuffix(".processor").endswith("attn1"))
    layer = modules[name.removesuffix(".processor")]
    return layer.processor, layer


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V per head, written out: [B, L, C] each -> [B, L, C] (float64)."""
    b, lq, c = q.shape
    d = c // heads
    q, k, v = (x.reshape(b, -1, heads, d).transpose(1, 2) for x in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)
    return (weights @ v).transpose(1, 2).reshape(b, lq, c)


def _linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    out = x @ layer.weight.double().T
    return out if layer.bias is None else out + layer.bias.double()


def _eq5(hub, layer, f_x: torch.Tensor, f_y: torch.Tensor, phi: float) -> torch.Tensor:
    """The input half of Eq. (4)-(5) from the layer's weights, in float64, independently of BoostHub."""
    f_x, f_y = f_x.double(), f_y.double()
    self_attn = _attend(_linear(f_x, layer.to_q), _linear(f_x, layer.to_k), _linear(f_x, layer.to_v), layer.heads)
    self_attn = _linear(self_attn, layer.to_out[0])
    f_ro = _linear(_attend(_linear(f_x, hub.q_x), _linear(f_y, hub.k_y), _linear(f_y, hub.v_y), hub.heads), hub.out)
    return self_attn + phi * f_ro


@torch.no_grad()
@pytest.mark.parametrize("streams", ["joint", "input"])
def test_boosthub_output_is_eq5_and_linear_in_phi(plain_unet, streams):
    """F_joint = SelfAttn(F_x) + phi F_ro: equal to Eq. (4)-(5) written out, at phi = 0.5 and 2, and
    linear in phi (out(phi) = out(0) + phi (out(1) - out(0))); phi**2 or a dropped phi both fail."""
    from flipnet_rt.models.boosthub import Streams

    model = boosted(plain_unet, w_o_std=0.05)
    hub, layer = _hub_layer(model)
    g = torch.Generator().manual_seed(3)
    channels = layer.to_q.in_features
    f_x, f_y = torch.randn(2, 2, 16, channels, generator=g)

    def run(phi: float) -> torch.Tensor:
        hub.phi = phi
        if streams == "joint":
            hub.streams = Streams.JOINT
            return hub(layer, torch.cat([f_x, f_y]))[:2]
        hub.streams, hub.given = Streams.INPUT, hub.condition_kv(f_y)
        try:
            return hub(layer, f_x)
        finally:
            hub.streams, hub.given = Streams.JOINT, None

    try:
        outs = {phi: run(phi).double() for phi in (0.0, 0.5, 1.0, 2.0)}
    finally:
        hub.phi = 1.0
    for phi in (0.5, 2.0):
        want = _eq5(hub, layer, f_x, f_y, phi)
        linear = outs[0.0] + phi * (outs[1.0] - outs[0.0])
        err, lin = float((outs[phi] - want).abs().max()), float((outs[phi] - linear).abs().max())
        print(
            f"{streams} phi={phi}: max-abs vs Eq. (5) {err:.2e}, vs linear {lin:.2e}; "
            f"phi's term {float((outs[1.0] - outs[0.0]).abs().max()):.2e}"
        )
        # float32 attention vs the float64 formula: measured ~1e-7; phi's term is ~1e-1
        assert err < 1e-5 and lin < 1e-5


@torch.no_grad()
def test_the_unet_hands_phi_to_every_boosthub(plain_unet):
    model = boosted(plain_unet, w_o_std=0.05)
    sample, timestep, context = dual_inputs(batch=1)
    seen: list[float] = []
    for hub in model.boosthubs:
        original = hub.boost

        def spy(*args, _hub=hub, _original=original):
            seen.append(float(_hub.phi))
            return _original(*args)

        hub.boost = spy
    model(sample, timestep, context, phi=0.37)
    assert seen == [pytest.approx(0.37)] * len(model.boosthubs)
