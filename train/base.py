"""The model a diffusion run starts from, what of it trains, and the run's base snapshot.

Starting point (``[model]``):

* ``sd_dir``: a local diffusers Stable Diffusion 2.1-base folder via
  :func:`flipnet_rt.models.from_diffusers` (UNet + VAE weights, BoostHub copied from the
  pretrained to_q/to_k/to_v with W_O = 0, the fixed prompts embedded by its text encoder);
* otherwise random weights of the ``config`` preset, seeded by ``model.seed`` (``FlipNet(config)``:
  BoostHub's W_O starts at zero as in training, unlike ``random_model``). There is no text
  encoder then: the ``restore`` prompt embedding is drawn N(0, 1) once, and the ``degrade`` and
  ``negative`` embeddings are zeros, which also stand for the empty prompt (a dropped text).
  The VAE comes from a ``flipnet-train vae`` checkpoint (required), with the latent scaling it
  measured.

Restoration mode loads the LQ face encoder of a ``flipnet-train ae`` checkpoint (frozen).

The base is written once per run to ``<output_dir>/base_model/`` (a model directory without
LoRA). Checkpoints hold only the trainable weights; a resumed run and ``flipnet-train merge``
read the base from there, and check its digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import torch
from torch import nn

from flipnet_rt.config.model import FlipnetConfig
from flipnet_rt.config.presets import preset
from flipnet_rt.models import FlipNet, Mode, add_lora, from_diffusers, load_model_dir, save_model_dir

from .checkpoint import CheckpointError, read_state, read_weights, resolve_checkpoint
from .config import DegradationSection, ModelSection, UnetTraining

log = logging.getLogger(__name__)

BASE_DIR = "base_model"
DIGEST_FILES = ("unet.safetensors", "vae.safetensors", "prompt_embeds.safetensors")


def model_config(section: ModelSection) -> FlipnetConfig:
    try:
        return preset(section.config)
    except KeyError as exc:
        raise ValueError(f"model.config (--config): {exc.args[0]}") from None


def build_base(section: ModelSection, diffusion: DegradationSection, mode: Mode) -> FlipNet:
    """The untrained FLIPNET of a run (no LoRA yet), in train mode, every weight frozen."""
    config = model_config(section)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(section.seed)
        if section.sd_dir:
            if not Path(section.sd_dir).is_dir():
                raise FileNotFoundError(
                    f"--sd-dir {section.sd_dir}: no such folder; pass a local diffusers SD 2.1-base folder"
                )
            model = from_diffusers(Path(section.sd_dir), config)
        else:
            model = FlipNet(config)  # W_O = 0 (Eq. 4 initialisation)
            model.prompt("restore").normal_()
            if not diffusion.vae_checkpoint:
                raise FileNotFoundError(
                    f"model.config {config.name!r} without --sd-dir has no pretrained VAE: train one with "
                    f"`flipnet-train vae` and pass --vae-checkpoint DIR (or pass --sd-dir)"
                )
    if diffusion.vae_checkpoint:
        load_vae_checkpoint(model, Path(diffusion.vae_checkpoint))
    if mode is Mode.RESTORE:
        ae_checkpoint = getattr(diffusion, "ae_checkpoint", "")
        if not ae_checkpoint:
            raise FileNotFoundError(
                "restoration mode needs the face autoencoder's LQ encoder: train it with `flipnet-train ae` "
                "and pass --ae-checkpoint DIR"
            )
        load_face_encoder(model, Path(ae_checkpoint))
    return model.train().requires_grad_(False)


def load_vae_checkpoint(model: FlipNet, directory: Path) -> None:
    """The VAE weights and latent scaling of a ``flipnet-train vae`` checkpoint (or run directory)."""
    directory = resolve_checkpoint(directory, "--vae-checkpoint")
    state = read_state(directory)
    if state["config"].get("command") != "vae":
        raise CheckpointError(
            f"--vae-checkpoint {directory}: a '{state['config'].get('command')}' checkpoint, not 'vae'"
        )
    saved_vae = state["extra"].get("vae_config")
    if saved_vae != json.loads(json.dumps(dict(model.config.vae))):
        raise CheckpointError(
            f"--vae-checkpoint {directory}: its VAE architecture differs from model.config "
            f"{model.config.name!r}; train the VAE with the same --config"
        )
    weights = read_weights(directory, "model")
    model.vae.load_state_dict(weights, strict=True)
    scaling = float(state["extra"]["latent_scaling"])
    model.config = dataclasses.replace(model.config, latent_scaling=scaling)
    log.info("VAE from %s (latent scaling %.5g)", directory, scaling)


def load_face_encoder(model: FlipNet, directory: Path) -> None:
    """The LQ encoder of a ``flipnet-train ae`` checkpoint (or run directory) into ``model.face.encoder``."""
    directory = resolve_checkpoint(directory, "--ae-checkpoint")
    state = read_state(directory)
    if state["config"].get("command") != "ae":
        raise CheckpointError(f"--ae-checkpoint {directory}: a '{state['config'].get('command')}' checkpoint, not 'ae'")
    weights = read_weights(directory, "model")
    prefix = "lq_encoder."
    encoder = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    try:
        model.face.encoder.load_state_dict(encoder, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"--ae-checkpoint {directory}: its encoder does not fit model.config {model.config.name!r} "
            f"({str(exc).splitlines()[0]}); train the autoencoder with the same --config"
        ) from None
    if state["extra"].get("stage") != "association":
        log.warning(
            "--ae-checkpoint %s is from the %s stage; the paper uses the association stage's encoder",
            directory,
            state["extra"].get("stage"),
        )


def make_trainable(model: FlipNet, section: DegradationSection, mode: Mode) -> None:
    """Add LoRA and set what trains (Sec. 4.1): LoRA on every attn1/attn2 projection, BoostHub
    (peft froze it: re-enabled), the adapter tau in restoration mode; with ``unet_training =
    "full"`` every UNet weight. The VAE and the face encoder stay frozen."""
    model.requires_grad_(False)
    unet = model.unet.unet
    if section.lora_rank > 0:
        add_lora(unet, rank=section.lora_rank, alpha=section.lora_alpha or None)
    if section.unet_training is UnetTraining.FULL:
        unet.requires_grad_(True)
    for hub in model.unet.boosthubs:
        hub.requires_grad_(True)
    if mode is Mode.RESTORE:
        model.face.adapter.requires_grad_(True)


def digest(directory: Path) -> str:
    """sha256 over the tensors of the base's UNet, VAE and prompt files (what LoRA and BoostHub
    attach to): each tensor's file, name, dtype, shape and bytes, in name order.

    Not over the files' bytes: safetensors writes its header's metadata in an order that varies
    from one process to the next, so the same weights saved by two runs differ byte-wise.
    """
    from safetensors import safe_open

    h = hashlib.sha256()
    for name in DIGEST_FILES:
        with safe_open(str(Path(directory) / name), framework="pt") as f:
            for key in sorted(f.keys()):
                t = f.get_tensor(key)
                h.update(f"{name}/{key}:{t.dtype}:{tuple(t.shape)};".encode())
                h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_digest(directory: Path) -> str:
    """The digest checkpoints written before :func:`digest` recorded: sha256 of the files' bytes."""
    h = hashlib.sha256()
    for name in DIGEST_FILES:
        with (Path(directory) / name).open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
    return h.hexdigest()


def write_base(model: FlipNet, output_dir: Path) -> Path:
    """``<output_dir>/base_model``: the starting model as a model directory (before LoRA)."""
    return save_model_dir(model, Path(output_dir) / BASE_DIR)


def read_base(directory: Path) -> FlipNet:
    """A base snapshot back, in train mode, frozen (``make_trainable`` decides what trains)."""
    if not (Path(directory) / "flipnet.json").is_file():
        raise FileNotFoundError(
            f"{directory}: the run's base model is missing; it is written when a diffusion run starts "
            f"and a checkpoint cannot be used without it"
        )
    return load_model_dir(Path(directory)).train().requires_grad_(False)


def trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]
