"""``flipnet-train merge``: a restoration/degradation checkpoint -> a model directory (DESIGN §4).

Reads the run's base snapshot (``<output_dir>/base_model``, digest checked), sets up the same
trainable layout (LoRA rank, BoostHub, tau), loads the checkpoint's trainable weights, folds LoRA
into the base weights (``merge_lora``) and writes the directory with ``save_model_dir``, which
``flipnet-rt restore --model DIR`` loads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from flipnet_rt.models import FlipNet, Mode, merge_lora, save_model_dir

from .base import digest, file_digest, make_trainable, read_base
from .checkpoint import CheckpointError, load_trainable, read_state, read_weights, resolve_checkpoint
from .config import DegradationSection, RestorationSection, from_dict

log = logging.getLogger(__name__)


def merged_model(checkpoint: Path) -> FlipNet:
    """The deployable model of a diffusion checkpoint: base + trained weights, LoRA folded."""
    checkpoint = resolve_checkpoint(Path(checkpoint), "--checkpoint")
    state = read_state(checkpoint)
    command = state["config"].get("command")
    if command not in ("restoration", "degradation"):
        raise CheckpointError(
            f"--checkpoint {checkpoint}: a '{command}' checkpoint; merge takes a restoration or degradation one"
        )
    extra = state["extra"]
    base_dir = (checkpoint / extra["base_model"]).resolve()
    recorded = extra["base_digest"]
    if recorded != digest(base_dir) and recorded != file_digest(base_dir):  # the file digest: older checkpoints
        raise CheckpointError(
            f"{base_dir}: differs from the base this checkpoint was trained on (digest mismatch); "
            f"the run's base_model/ was changed or replaced"
        )
    section_cls = RestorationSection if command == "restoration" else DegradationSection
    section = from_dict(section_cls, state["config"][command], f"{command}.")
    mode = Mode(extra["mode"])
    model = read_base(base_dir)
    make_trainable(model, section, mode)
    load_trainable(model, read_weights(checkpoint, "model"), f"{checkpoint}/model.safetensors")
    merged = merge_lora(model.unet.unet)
    log.info("merged LoRA into %d layers", merged)
    return model.eval().requires_grad_(False)


def merge(checkpoint: Path, output: Path, *, fp16: bool = False) -> Path:
    """Write the model directory of ``checkpoint`` to ``output`` (fp16 weights if asked)."""
    model = merged_model(checkpoint)
    return save_model_dir(model, Path(output), dtype=torch.float16 if fp16 else None)
