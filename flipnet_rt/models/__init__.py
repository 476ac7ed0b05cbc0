"""FLIPNET in PyTorch: UNet + BoostHub, face embedder, LoRA, model directories.

Needs the ``torch`` extra (``pip install 'flipnet-rt[torch]'``); the rest of ``flipnet_rt``
does not import this package unless a torch backend or training is used.
"""

from .boosthub import BoostHubProcessor, add_boosthub, boosthub_processors
from .face import FaceAutoencoder, FaceDecoder, FaceEmbedder, FaceEncoder, IdAdapter
from .flipnet import PROMPT_KINDS, FlipNet, Mode, stream_order
from .io import (
    RANDOM_PREFIX,
    embed_prompts,
    from_diffusers,
    load_model,
    load_model_dir,
    random_model,
    save_model_dir,
)
from .lora import add_lora, lora_layers, merge_lora
from .unet import FlipNetUNet, build_unet, load_base_unet

__all__ = [
    "BoostHubProcessor",
    "add_boosthub",
    "boosthub_processors",
    "FaceAutoencoder",
    "FaceDecoder",
    "FaceEmbedder",
    "FaceEncoder",
    "IdAdapter",
    "PROMPT_KINDS",
    "FlipNet",
    "Mode",
    "stream_order",
    "RANDOM_PREFIX",
    "embed_prompts",
    "from_diffusers",
    "load_model",
    "load_model_dir",
    "random_model",
    "save_model_dir",
    "add_lora",
    "lora_layers",
    "merge_lora",
    "FlipNetUNet",
    "build_unet",
    "load_base_unet",
]
