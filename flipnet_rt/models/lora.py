"""LoRA (Sec. 3, "Low-Rank Adaptation") on every attention layer of the UNet, via peft.

Training adds LoRA to ``to_q, to_k, to_v, to_out.0`` of every ``attn1`` and ``attn2``
(W = W_0 + BA, rank 64 by default); deployment folds it into plain weights (DESIGN §2), so
engines carry no LoRA branch. BoostHub's own projections are not targeted.
"""

from __future__ import annotations

from diffusers.models import UNet2DConditionModel
from peft import LoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer

# peft matches a string target with re.fullmatch against each module's qualified name.
LORA_TARGETS = r".*\.attn[12]\.(to_q|to_k|to_v|to_out\.0)"


def add_lora(unet: UNet2DConditionModel, rank: int = 64, alpha: float | None = None) -> LoraConfig:
    """Wrap the attention projections with LoRA adapters (B initialised to zero: no change yet).

    peft freezes every other parameter; training re-enables BoostHub and the adapter tau.
    Add BoostHub first, then LoRA.
    """
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else rank,  # type: ignore[arg-type]  # peft says int; any number scales
        target_modules=LORA_TARGETS,
        init_lora_weights=True,
    )
    unet.add_adapter(config)
    return config


def lora_layers(unet: UNet2DConditionModel) -> dict[str, BaseTunerLayer]:
    """Every LoRA-wrapped layer by name (empty for a merged or LoRA-free UNet)."""
    return {name: m for name, m in unet.named_modules() if isinstance(m, BaseTunerLayer)}


def merge_lora(unet: UNet2DConditionModel) -> int:
    """Fold LoRA into the base weights and remove the adapters; returns how many layers merged."""
    count = len(lora_layers(unet))
    if count:
        unet.fuse_lora(lora_scale=1.0, safe_fusing=True)
        unet.unload_lora()
    return count
