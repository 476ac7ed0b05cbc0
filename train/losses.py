"""Loss terms: perceptual (VGG19), PatchGAN discriminator and its objectives, association CE (Eq. 6).

Every loss returns a 0-d float tensor (a mean over the batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import AdversarialLoss
from .vgg import VGG19Features


def perceptual_loss(vgg: VGG19Features, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. (8): ``L_p = sum_l ||phi_l(x) - phi_l(x_hat)||^2`` (mean squared error per VGG19 layer).

    ``prediction``, ``target``: ``[B, 3, H, W]`` in [-1, 1]; the target's features carry no gradient.
    """
    with torch.no_grad():
        wanted = vgg(target)
    got = vgg(prediction)
    terms = [F.mse_loss(got[name].float(), wanted[name].float()) for name in vgg.layers]  # at least one layer
    return sum(terms[1:], terms[0])


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not pix2pix's BatchNorm: no running statistics (exact resume, no SyncBN under DDP).
    return nn.GroupNorm(min(32, max(1, channels // 4)), channels)


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix's NLayerDiscriminator): ``[B, 3, H, W]`` -> patch logits ``[B, 1, h, w]``.

    ``layers`` stride-2 convolutions (receptive field 70 px for 3 layers), then two stride-1 ones.
    """

    def __init__(self, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        if layers < 1 or channels < 1:
            raise ValueError("ae.disc_layers and ae.disc_channels must be >= 1")
        seq: list[nn.Module] = [nn.Conv2d(3, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        c = channels
        for n in range(1, layers):
            c_next = channels * min(2**n, 8)
            seq += [nn.Conv2d(c, c_next, 4, stride=2, padding=1, bias=False), _norm(c_next), nn.LeakyReLU(0.2)]
            c = c_next
        c_next = channels * min(2**layers, 8)
        seq += [nn.Conv2d(c, c_next, 4, stride=1, padding=1, bias=False), _norm(c_next), nn.LeakyReLU(0.2)]
        seq.append(nn.Conv2d(c_next, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*seq)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def generator_loss(kind: AdversarialLoss, fake_logits: torch.Tensor) -> torch.Tensor:
    """L_adv for the autoencoder. Hinge: ``-E[D(x_hat)]``; non-saturating: ``E[softplus(-D(x_hat))]``."""
    fake_logits = fake_logits.float()
    if kind is AdversarialLoss.HINGE:
        return -fake_logits.mean()
    return F.softplus(-fake_logits).mean()


def discriminator_loss(kind: AdversarialLoss, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge: ``E[relu(1 - D(x))] + E[relu(1 + D(x_hat))]``; non-saturating: the logistic GAN loss."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind is AdversarialLoss.HINGE:
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def association_loss(
    hq_tokens: torch.Tensor, lq_tokens: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (6): cross-entropy over the N x N patch-similarity matrix of one image's HQ and LQ tokens.

    ``hq_tokens``, ``lq_tokens``: ``[B, N, d]`` (row-major patches of the same image).
    ``M[b, i, j] = cos(z_x^i, z_y^j) / temperature``; the label of row i (and column i) is i.
    Returns ``(CE_H, CE_L)``: CE_H over rows (each HQ patch picks its LQ patch), CE_L over
    columns (each LQ patch picks its HQ patch), as CLIP's two directions.
    """
    if hq_tokens.shape != lq_tokens.shape:
        raise ValueError(f"HQ tokens {tuple(hq_tokens.shape)} and LQ tokens {tuple(lq_tokens.shape)} differ")
    batch, n, _ = hq_tokens.shape
    zx = F.normalize(hq_tokens.float(), dim=-1)
    zy = F.normalize(lq_tokens.float(), dim=-1)
    logits = zx @ zy.transpose(1, 2) / temperature  # M: [B, N, N]
    labels = torch.arange(n, device=logits.device).repeat(batch)
    ce_h = F.cross_entropy(logits.reshape(batch * n, n), labels)
    ce_l = F.cross_entropy(logits.transpose(1, 2).reshape(batch * n, n), labels)
    return ce_h, ce_l
