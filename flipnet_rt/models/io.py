"""Model directories (DESIGN §4), ``random:<config>`` specs and local Stable Diffusion folders.

A model directory is ``flipnet.json`` plus one safetensors file per network:

    unet.safetensors           merged UNet with BoostHub
    vae.safetensors            AutoencoderKL
    face_encoder.safetensors   LQ face encoder + adapter tau
    prompt_embeds.safetensors  the fixed prompts' embeddings, [77, D] each
    fidelity.safetensors       optional: the fidelity estimator (models/fidelity.py)

safetensors only: no pickle is ever loaded, and nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..config.model import ConfigError, FlipnetConfig
from ..config.presets import preset
from .flipnet import PROMPT_KINDS, FlipNet
from .lora import lora_layers

log = logging.getLogger(__name__)

RANDOM_PREFIX = "random:"
RANDOM_SEED = 0
WEIGHT_FILES = {
    "unet": "unet.safetensors",
    "vae": "vae.safetensors",
    "face": "face_encoder.safetensors",
    "prompts": "prompt_embeds.safetensors",
    "fidelity": "fidelity.safetensors",
}


def _parts(model: FlipNet) -> dict[str, nn.Module]:
    parts = {"unet": model.unet.unet, "vae": model.vae, "face": model.face}
    if model.fidelity is not None:
        parts["fidelity"] = model.fidelity
    return parts


def save_fidelity(estimator: nn.Module, directory: Path) -> Path:
    """Write (or replace) a model directory's ``fidelity.safetensors`` alone, in fp32
    (:class:`~.fidelity.FidelityNet`, from ``flipnet-train fidelity``)."""
    path = Path(directory) / WEIGHT_FILES["fidelity"]
    _write_safetensors(_cast(estimator.state_dict(), torch.float32), path)
    return path


def save_model_dir(model: FlipNet, directory: Path, *, dtype: torch.dtype | None = None) -> Path:
    """Write a model directory; each file appears whole (written aside, then renamed) or not at all.

    ``dtype`` (e.g. ``torch.float16``) casts floating-point weights on the way out.
    Refuses a UNet that still carries LoRA layers: merge first (``merge_lora``).
    """
    if lora_layers(model.unet.unet):
        raise ValueError("the UNet still has LoRA layers; call flipnet_rt.models.merge_lora first")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for part, module in _parts(model).items():
        _write_safetensors(_cast(module.state_dict(), dtype), directory / WEIGHT_FILES[part])
    prompts = {kind: model.prompt(kind) for kind in PROMPT_KINDS}
    _write_safetensors(_cast(prompts, dtype), directory / WEIGHT_FILES["prompts"])
    model.config.save(directory)
    return directory


def _cast(tensors: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in tensors.items():
        t = t.detach()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        out[name] = t.contiguous().cpu()
    return out


def _write_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", "producer": "flipnet-rt"})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_model_dir(directory: Path, *, dtype: torch.dtype = torch.float32) -> FlipNet:
    """Read a model directory written by :func:`save_model_dir`; errors name the file and the fix."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory}: not a model directory; pass a folder with flipnet.json or random:<config>"
        )
    config = FlipnetConfig.load(directory)
    model = FlipNet(config)
    if (directory / WEIGHT_FILES["fidelity"]).is_file():
        from .fidelity import FidelityNet

        model.fidelity = FidelityNet()
    for part, module in _parts(model).items():
        _load_into(module, directory / WEIGHT_FILES[part])
    prompts = _read_safetensors(directory / WEIGHT_FILES["prompts"])
    for kind in PROMPT_KINDS:
        if kind not in prompts or prompts[kind].shape != model.prompt(kind).shape:
            raise ConfigError(
                f"{directory / WEIGHT_FILES['prompts']}: needs '{kind}' of shape "
                f"{tuple(model.prompt(kind).shape)}; re-export the model"
            )
        model.prompt(kind).copy_(prompts[kind])
    return model.to(dtype).eval().requires_grad_(False)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; the model directory is incomplete, write it again")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc}); write it again") from None


def _load_into(module: nn.Module, path: Path) -> None:
    state = _read_safetensors(path)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ConfigError(
            f"{path}: does not match flipnet.json ({len(missing)} missing, {len(unexpected)} unexpected "
            f"tensors, e.g. {detail}); the weights and the config come from different models"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ConfigError(
                f"{path}: {name} has shape {tuple(tensor.shape)}, flipnet.json implies "
                f"{tuple(expected[name].shape)}; the weights and the config come from different models"
            )
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def random_model(config: FlipnetConfig | str, *, seed: int = RANDOM_SEED) -> FlipNet:
    """Seeded random weights for every tensor, BoostHub's W_O and the prompt embeddings included.

    W_O is drawn (not zero as for training) so that every path of the model is exercised.
    The global torch RNG is left as it was.
    """
    if isinstance(config, str):
        config = preset(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FlipNet(config)
        for hub in model.unet.boosthubs:
            nn.init.normal_(hub.out.weight, std=0.02)
        for kind in PROMPT_KINDS:
            model.prompt(kind).normal_()
    return model.eval().requires_grad_(False)


def load_model(spec: str | Path, *, dtype: torch.dtype = torch.float32) -> FlipNet:
    """A model from a spec: ``random:<config>`` (seeded random weights) or a model directory."""
    text = str(spec)
    if text.startswith(RANDOM_PREFIX):
        log.warning("model %s has random weights: its output is not a restoration", text)
        return random_model(text[len(RANDOM_PREFIX) :]).to(dtype)
    return load_model_dir(Path(text), dtype=dtype)


def from_diffusers(diffusers_dir: Path, config: FlipnetConfig | str = "sd21-base") -> FlipNet:
    """A FLIPNET to train, from a local Stable Diffusion folder (unet/, vae/, text_encoder/, tokenizer/).

    UNet and VAE weights come from the folder (safetensors, no download); BoostHub is added after
    loading (copies of the pretrained to_q/to_k/to_v, W_O = 0); the face embedder starts random;
    the fixed prompts are embedded with the folder's text encoder.
    """
    from diffusers.models import AutoencoderKL

    from .unet import load_base_unet

    if isinstance(config, str):
        config = preset(config)
    root = Path(diffusers_dir)
    unet = load_base_unet(root)
    if unet.config["cross_attention_dim"] != config.text_width:
        raise ConfigError(
            f"{root}/unet: cross_attention_dim {unet.config['cross_attention_dim']} differs from "
            f"{config.text_width} of config {config.name!r}; pick the matching config"
        )
    vae = AutoencoderKL.from_pretrained(root / "vae", use_safetensors=True, local_files_only=True)
    config = dataclasses.replace(config, unet=_plain(unet.config), vae=_plain(vae.config))
    model = FlipNet(config, unet=unet, vae=vae)
    embeds = embed_prompts(root, [getattr(config.prompts, kind) for kind in PROMPT_KINDS], config.text_tokens)
    for kind, embed in zip(PROMPT_KINDS, embeds):
        model.prompt(kind).copy_(embed)
    return model


def _plain(diffusers_config: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments as JSON values (drops diffusers' private ``_*`` entries)."""
    public = {k: v for k, v in diffusers_config.items() if not k.startswith("_")}
    return json.loads(json.dumps(public))


@torch.no_grad()
def embed_prompts(diffusers_dir: Path, prompts: list[str], length: int = 77) -> list[torch.Tensor]:
    """Each prompt's last hidden state ``[length, D]`` from the folder's CLIP text encoder."""
    from transformers import CLIPTextModel, CLIPTokenizer

    root = Path(diffusers_dir)
    for sub in ("tokenizer", "text_encoder"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"{root / sub}: missing; the prompts are embedded with the folder's text encoder")
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    encoder = CLIPTextModel.from_pretrained(root / "text_encoder", use_safetensors=True, local_files_only=True)
    ids = tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    hidden = encoder(ids).last_hidden_state
    return list(hidden.unbind(0))
