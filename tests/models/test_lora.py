"""LoRA on every attn1/attn2 projection (peft), and its merge into plain weights."""

from __future__ import annotations

import torch

from flipnet_rt.config.presets import TINY_UNET
from flipnet_rt.models import FlipNetUNet, add_lora, build_unet, lora_layers, merge_lora


def test_lora_targets_every_attention_projection_but_not_boosthub():
    torch.manual_seed(0)
    unet = build_unet(TINY_UNET)
    attention_layers = [n for n in unet.attn_processors]
    add_lora(unet, rank=4)
    layers = lora_layers(unet)
    assert len(layers) == 4 * len(attention_layers)
    assert all(".attn1." in n or ".attn2." in n for n in layers)
    assert not any(".processor." in n for n in layers)
    suffixes = {n.rsplit(".attn", 1)[1][2:] for n in layers}
    assert suffixes == {"to_q", "to_k", "to_v", "to_out.0"}


@torch.no_grad()
def test_merged_equals_unmerged():
    torch.manual_seed(0)
    unet = build_unet(TINY_UNET)
    add_lora(unet, rank=4)
    g = torch.Generator().manual_seed(3)
    for name, param in unet.named_parameters():
        if "lora_B" in name or ".processor.out." in name:  # B and W_O start at zero: make them count
            param.copy_(torch.randn(param.shape, generator=g) * 0.05)
    model = FlipNetUNet(unet).eval()
    sample = torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([700, 700, 0, 0])
    context = torch.randn(4, 93, 64, generator=g)
    unmerged = model(sample, t, context, phi=1.0)
    assert merge_lora(unet) == 4 * len(unet.attn_processors)
    assert not lora_layers(unet)
    merged = FlipNetUNet(unet).eval()(sample, t, context, phi=1.0)
    rel = ((merged - unmerged).norm() / unmerged.norm()).item()
    max_abs = (merged - unmerged).abs().max().item()
    print(f"LoRA merged vs unmerged: relative L2 {rel:.2e}, max abs {max_abs:.2e}")
    # float32: folding BA into W changes only the order of the sums (about 1e-7 relative per
    # matmul); 1e-5 leaves room for accumulation through the whole UNet.
    assert rel < 1e-5, f"relative L2 {rel:.2e}"
    base_names = set(build_unet(TINY_UNET).state_dict())
    assert set(unet.state_dict()) == base_names, "merged UNet must have the plain (BoostHub) layout"
