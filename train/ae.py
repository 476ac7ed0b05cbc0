"""The face autoencoder (Sec. 4.1, "BFR-oriented face embeddings"): ``flipnet-train ae``.

HQ encoder on the HQ face, LQ encoder on its LQ version, one shared decoder reconstructing each
input (flipnet_rt.models.FaceAutoencoder; the architecture is the model config's ``face``).

Reconstruction stage, per stream and averaged over the two streams:

    L_ae = L1 + 0.5 L_p + 0.8 L_adv

L_p: VGG19 feature MSE (train/losses.py); L_adv: a PatchGAN discriminator, hinge loss by default
(generator ``-E[D(x_hat)]``, discriminator ``E[relu(1 - D(x))] + E[relu(1 + D(x_hat))]``;
``ae.adversarial_loss = "non-saturating"`` for the logistic loss). The discriminator sees real
HQ and LQ faces and both reconstructions, and trains from ``ae.adversarial_start`` on.

The 0.8 is read as VQGAN's ``disc_weight`` (taming-transformers, which DAEFR's autoencoder and so
the paper's follow): it multiplies the adaptive weight ``||grad L_rec|| / ||grad L_adv||`` taken
at the decoder's last layer, which keeps the GAN gradient at the scale of the reconstruction's.
``ae.adaptive_weight = false`` uses the bare 0.8 instead (on the tiny LFW run that pushed L1 from
0.13 back to 0.3).

Association stage (``--stage association --init <reconstruction checkpoint>``): adds Eq. (6),

    L_asso = L_ae + (CE_H + CE_L) / 2

over the N x N cosine-similarity matrix (temperature ``ae.temperature``) of the HQ and LQ tokens
of the same image, labels on the diagonal.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from flipnet_rt.models import FaceAutoencoder
from flipnet_rt.models.face import to_tokens

from .base import model_config
from .checkpoint import CheckpointError, load_trainable, read_state, read_weights, resolve_checkpoint
from .config import AeStage, AeTrainConfig
from .data import face_dataset
from .data.seeding import EpochDataset
from .loop import Batch, RunResult, Stage, TrainedPart, run_stage
from .losses import PatchDiscriminator, association_loss, discriminator_loss, generator_loss, perceptual_loss
from .vgg import VGG19Features, load_vgg19

log = logging.getLogger(__name__)


class AeLoss(nn.Module):
    """Reconstruction (and association) terms of one micro-batch, both streams."""

    def __init__(
        self, autoencoder: FaceAutoencoder, vgg: VGG19Features | None, association: bool, temperature: float
    ) -> None:
        super().__init__()
        self.autoencoder, self.vgg = autoencoder, vgg
        self.association, self.temperature = association, temperature

    def forward(self, hq: torch.Tensor, lq: torch.Tensor) -> dict[str, torch.Tensor]:
        """``hq``, ``lq`` ``[B, 3, R, R]`` -> terms, plus ``rec`` ``[2B, 3, R, R]`` = ``[x_hat; y_hat]``."""
        ae = self.autoencoder
        z_x, z_y = ae.hq_encoder(hq), ae.lq_encoder(lq)  # [B, d, g, g] each
        rec = ae.decoder(torch.cat([z_x, z_y]))
        real = torch.cat([hq, lq])
        out = {"rec": rec, "l1": F.l1_loss(rec.float(), real)}
        if self.vgg is not None:
            out["perceptual"] = perceptual_loss(self.vgg, rec, real)
        if self.association:
            out["ce_h"], out["ce_l"] = association_loss(to_tokens(z_x), to_tokens(z_y), self.temperature)  # Eq. (6)
        return out


class AutoencoderStage(Stage):
    """Both stages; the association stage differs only by the CE terms (and its init)."""

    def __init__(self, config: AeTrainConfig) -> None:
        self.config = config
        section = config.ae
        self.name = f"ae-{section.stage.value}"
        spec = model_config(config.model).face
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.model.seed)
            self.autoencoder = FaceAutoencoder(spec)
            self.disc = PatchDiscriminator(section.disc_channels, section.disc_layers)
        self.spec = spec
        association = section.stage is AeStage.ASSOCIATION
        if association and not section.init:
            raise FileNotFoundError(
                "the association stage starts from the reconstruction stage: pass --init DIR "
                "(a `flipnet-train ae --stage reconstruction` checkpoint)"
            )
        self.init_dir = Path(section.init) if section.init else None
        vgg = None
        if section.perceptual_weight > 0:
            vgg = load_vgg19(config.perceptual.vgg19, config.perceptual.layers)
        else:
            log.warning("perceptual loss off (ae.perceptual_weight = 0): L_ae = L1 + L_adv")
        self.adversarial = section.adversarial_weight > 0
        self.loss = AeLoss(self.autoencoder, vgg, association, section.temperature)
        terms = ["loss", "l1"] + (["perceptual"] if vgg is not None else [])
        terms += ["adversarial", "adversarial_scale", "disc"] if self.adversarial else []
        terms += ["association", "ce_h", "ce_l"] if association else []
        self.terms = tuple(terms)

    def load_init(self) -> None:
        """Weights of the previous stage (autoencoder and discriminator)."""
        if self.init_dir is None:
            raise CheckpointError("--init: no checkpoint to start from (ae.init is empty)")
        directory = resolve_checkpoint(self.init_dir, "--init")
        state = read_state(directory)
        if state["config"].get("command") != "ae":
            raise CheckpointError(f"--init {directory}: a '{state['config'].get('command')}' checkpoint, not 'ae'")
        load_trainable(self.autoencoder, read_weights(directory, "model"), f"{directory}/model.safetensors")
        if "disc" in state["parts"]:
            try:
                load_trainable(self.disc, read_weights(directory, "disc"), f"{directory}/disc.safetensors")
            except CheckpointError:
                log.warning("--init %s: its discriminator has another shape; the discriminator starts fresh", directory)

    def parts(self) -> list[TrainedPart]:
        lr = self.config.optim.lr
        parts = [TrainedPart("model", self.autoencoder, self.loss, lr)]
        if self.adversarial:
            parts.append(TrainedPart("disc", self.disc, self.disc, self.config.ae.disc_lr or lr))
        return parts

    def micro_step(self, batch: Batch, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        section = self.config.ae
        out = self.modules["model"](batch.hq, batch.lq)
        terms = {"l1": out["l1"]}
        reconstruction = section.l1_weight * out["l1"]
        if "perceptual" in out:
            terms["perceptual"] = out["perceptual"]
            reconstruction = reconstruction + section.perceptual_weight * out["perceptual"]
        loss = reconstruction
        if "ce_h" in out:
            terms["ce_h"], terms["ce_l"] = out["ce_h"], out["ce_l"]
            terms["association"] = (out["ce_h"] + out["ce_l"]) / 2
            loss = loss + section.association_weight * terms["association"]
        gan = self.adversarial and step >= section.adversarial_start
        if gan:
            self.disc.requires_grad_(False)  # L_adv trains the autoencoder only
            with self.accelerator.autocast():
                fake_logits = self.disc(out["rec"])
            self.disc.requires_grad_(True)
            terms["adversarial"] = generator_loss(section.adversarial_loss, fake_logits)
            weight = torch.tensor(section.adversarial_weight, device=loss.device)
            if section.adaptive_weight:
                weight = weight * self._adaptive_weight(reconstruction, terms["adversarial"])
            terms["adversarial_scale"] = weight
            loss = loss + weight * terms["adversarial"]
        terms["loss"] = loss
        self.accelerator.backward(loss)
        if gan:
            real = torch.cat([batch.hq, batch.lq])
            logits = self.modules["disc"](torch.cat([real, out["rec"].detach()]))  # one DDP call
            real_logits, fake_logits = logits.chunk(2)
            terms["disc"] = discriminator_loss(section.adversarial_loss, real_logits, fake_logits)
            self.accelerator.backward(terms["disc"])
        return {k: v.detach() for k, v in terms.items()}

    def _adaptive_weight(self, reconstruction: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
        """VQGAN's ``||grad L_rec|| / (||grad L_adv|| + 1e-4)`` at the decoder's last layer, in [0, 1e4]."""
        conv = self.autoencoder.decoder.net[-1]
        assert isinstance(conv, nn.Conv2d), "the decoder ends with a convolution"
        last = conv.weight
        g_rec = torch.autograd.grad(reconstruction, last, retain_graph=True)[0]
        g_adv = torch.autograd.grad(adversarial, last, retain_graph=True)[0]
        return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4).detach()

    def extra_state(self) -> dict[str, Any]:
        return {
            "stage": self.config.ae.stage.value,
            "face": dataclasses.asdict(self.spec),
            "model_config": self.config.model.config,
        }


def train_ae(
    config: AeTrainConfig,
    *,
    dataset: EpochDataset | None = None,
    resume: str | Path | None = None,
    accelerator: Any = None,
    progress: bool = True,
) -> RunResult:
    """``flipnet-train ae``: one stage of the face autoencoder."""

    def build(accelerator: Any, resume_dir: Path | None) -> AutoencoderStage:
        stage = AutoencoderStage(config)
        if stage.init_dir is not None and resume_dir is None:
            stage.load_init()
        if config.run.gradient_checkpointing:
            log.warning("run.gradient_checkpointing: the face autoencoder has no checkpointed blocks; ignored")
        return stage

    return run_stage(
        config,
        build,
        lambda stage: face_dataset(config.data, model_config(config.model).resolution, config.run.seed),
        dataset=dataset,
        resume=resume,
        accelerator=accelerator,
        progress=progress,
    )
