"""The FLIPNET container: context layout, face tokens, mode flip."""

from __future__ import annotations

import torch

from flipnet_rt.models import Mode, stream_order


def test_context_is_text_then_id_tokens(tiny_model):
    c = tiny_model.config
    ids = torch.randn(3, c.face.tokens, c.text_width)
    ctx = tiny_model.context("restore", ids, 3)
    assert ctx.shape == (3, c.text_tokens + c.face.tokens, c.text_width)
    assert torch.equal(ctx[:, : c.text_tokens], tiny_model.prompt("restore").expand(3, -1, -1))
    assert torch.equal(ctx[:, c.text_tokens :], ids)
    dropped = tiny_model.context("negative", None, 2)
    assert dropped.shape == (2, c.context_tokens, c.text_width)
    assert not dropped[:, c.text_tokens :].any(), "a dropped embedding is N zero tokens"


@torch.no_grad()
def test_face_embedder_shapes(tiny_model):
    c = tiny_model.config
    tokens = tiny_model.face(torch.randn(2, 3, c.resolution, c.resolution))
    assert tokens.shape == (2, c.face.tokens, c.text_width)


@torch.no_grad()
def test_vae_round_trip_shapes(tiny_model):
    c = tiny_model.config
    latents = tiny_model.encode(torch.zeros(2, 3, c.resolution, c.resolution))
    assert latents.shape == (2, c.latent_channels, c.latent_size, c.latent_size)
    assert tiny_model.decode(latents).shape == (2, 3, c.resolution, c.resolution)


@torch.no_grad()
def test_flipping_the_mode_swaps_the_streams(tiny_model):
    """Same weights for both modes: degradation on (hq, lq) is restoration on the swapped pair."""
    g = torch.Generator().manual_seed(0)
    hq, lq = torch.randn(2, 1, 4, 8, 8, generator=g)
    t_in, t_cond = torch.tensor([600]), torch.tensor([0])
    ctx = tiny_model.context("degrade", None, 1)
    degrade = tiny_model.denoise_pair(*stream_order(Mode.DEGRADE, hq, lq), t_in, t_cond, ctx)
    restore_swapped = tiny_model.denoise_pair(*stream_order(Mode.RESTORE, lq, hq), t_in, t_cond, ctx)
    assert all(torch.equal(a, b) for a, b in zip(degrade, restore_swapped))
    restore = tiny_model.denoise_pair(*stream_order(Mode.RESTORE, hq, lq), t_in, t_cond, ctx)
    assert not torch.equal(restore[0], degrade[0]), "the modes must differ on the same pair"
