"""BoostHub (Sec. 4.1, Eq. 4-5): cross-stream attention beside every self-attention layer.

The UNet always sees the dual-stream batch ``[input (B); condition (B)]`` (DESIGN §1). At every
``attn1`` the input half attends to the condition half of the same layer, in one direction only:

    F_ro    = W_O · softmax(Q_x K_yᵀ / √d) V_y,  Q_x = W_Qx F_x, K_y = W_Ky F_y, V_y = W_Vy F_y   (Eq. 4)
    F_joint = SelfAttn(F_x) + phi · F_ro                                                         (Eq. 5)

The condition half gets plain self-attention, so the condition stream's features never depend on
the input stream: the property the condition cache (DESIGN §3) rests on.

It is written as a diffusers attention processor that is an ``nn.Module`` (the IP-Adapter
pattern), so its weights live in the UNet's state dict under ``...attn1.processor.*``. Its
projections are deliberately not named ``to_q/to_k/to_v``: peft would wrap them with LoRA.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn


class Streams(str, Enum):
    """What the UNet batch holds, as BoostHub sees it (DESIGN §3, condition cache).

    JOINT: ``[input (B); condition (B)]``, the reference path. CONDITION: the condition half
    alone; each BoostHub records its K_y, V_y (``captured``). INPUT: the input half alone; each
    BoostHub attends to K_y, V_y handed in (``given``), computed once by a CONDITION pass.
    """

    JOINT = "joint"
    CONDITION = "condition"
    INPUT = "input"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, upcast: bool = False) -> torch.Tensor:
    """Scaled dot-product attention over ``[B, heads, L, d]``.

    ``upcast``: scores, softmax and the weighted sum in float32, the result cast back. An fp16 graph
    (``flipnet-rt export --precision fp16``) then keeps attention logits beyond fp16's 65504 finite
    instead of turning them into inf and the softmax into NaN (Stable Diffusion 2.1's known fp16
    failure where attention is not fused).
    """
    if upcast and q.dtype != torch.float32:
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v)


class Fp32AttnProcessor:
    """``AttnProcessor2_0`` for the transformer attentions of Stable Diffusion's UNet with the
    attention itself in float32 (:func:`attention`); the projections stay in the model's dtype.

    Covers what those layers use (no mask, group/spatial norm, q/k norm or residual in the layer)
    and refuses anything else rather than compute it differently.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extras = (
            attention_mask is not None
            or attn.group_norm is not None
            or attn.spatial_norm is not None
            or attn.norm_q is not None
            or attn.norm_k is not None
            or attn.norm_cross
            or attn.residual_connection
            or hidden_states.ndim != 3
        )
        if extras:
            raise NotImplementedError("fp32 attention covers Stable Diffusion's transformer attention only")
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q, k, v = (_heads(x, attn.heads) for x in (attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)))
        out = _merge(attention(q, k, v, upcast=True))
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, inner = x.shape
    return x.view(batch, length, heads, inner // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


class BoostHubProcessor(nn.Module):
    """Self-attention for both halves plus BoostHub for the input half of ``attn1``.

    ``phi`` (the enhance weight of Eq. 5) is a run-time value: a float or a 0-d/[1] tensor set by
    :class:`~flipnet_rt.models.unet.FlipNetUNet` before each forward, never baked into weights.
    """

    def __init__(self, attn: Attention) -> None:
        super().__init__()
        if attn.is_cross_attention:
            raise ValueError("BoostHub belongs beside self-attention (attn1), not cross-attention")
        inner = attn.to_q.out_features
        query_dim = attn.to_q.in_features
        self.heads = attn.heads
        # Eq. (4): W_Qx, W_Ky, W_Vy start as copies of the layer's to_q, to_k, to_v ...
        self.q_x = nn.Linear(query_dim, inner, bias=attn.to_q.bias is not None)
        self.k_y = nn.Linear(query_dim, inner, bias=attn.to_k.bias is not None)
        self.v_y = nn.Linear(query_dim, inner, bias=attn.to_v.bias is not None)
        # ... and W_O starts at zero, so a fresh BoostHub leaves the base UNet unchanged.
        self.out = nn.Linear(inner, query_dim, bias=False)
        self.reset_from(attn)
        self.phi: float | torch.Tensor = 1.0
        self.streams = Streams.JOINT
        self.captured: tuple[torch.Tensor, torch.Tensor] | None = None  # CONDITION: [B, L, C] each
        self.given: tuple[torch.Tensor, torch.Tensor] | None = None  # INPUT: [B, L, C] each
        self.upcast = False  # attention in float32 (set_attention_upcast)
        self._self_attention = AttnProcessor2_0()
        self._self_attention_fp32 = Fp32AttnProcessor()

    @torch.no_grad()
    def reset_from(self, attn: Attention) -> None:
        """Initialise as the paper does: copies of to_q/to_k/to_v, W_O = 0."""
        for mine, theirs in ((self.q_x, attn.to_q), (self.k_y, attn.to_k), (self.v_y, attn.to_v)):
            base = getattr(theirs, "base_layer", theirs)  # unwrap a peft LoRA layer
            mine.weight.copy_(base.weight)
            if mine.bias is not None:
                mine.bias.copy_(base.bias)
        nn.init.zeros_(self.out.weight)

    def condition_kv(self, f_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K_y, V_y of Eq. (4) from the condition half: ``[B, L, C]`` each (heads not split)."""
        return self.k_y(f_y), self.v_y(f_y)

    def boost(self, f_x: torch.Tensor, k_y: torch.Tensor, v_y: torch.Tensor) -> torch.Tensor:
        """F_ro of Eq. (4) for the input half: ``[B, L, C]`` given the condition's K_y, V_y."""
        q_x, k_y, v_y = (_heads(x, self.heads) for x in (self.q_x(f_x), k_y, v_y))
        return self.out(_merge(attention(q_x, k_y, v_y, self.upcast)))

    def forward(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``hidden_states`` ``[2B, L, C]`` (JOINT, input half first) or ``[B, L, C]``; same shape out."""
        if hidden_states.ndim != 3:
            raise ValueError(f"BoostHub expects [batch, tokens, channels], got {tuple(hidden_states.shape)}")
        self_attention = self._self_attention_fp32 if self.upcast else self._self_attention
        out = self_attention(attn, hidden_states, None, attention_mask, temb)
        if self.streams is Streams.CONDITION:
            self.captured = self.condition_kv(hidden_states)
            return out
        if self.streams is Streams.INPUT:
            if self.given is None:
                raise RuntimeError("BoostHub in INPUT mode needs the condition's K/V (run a CONDITION pass)")
            return out + self.phi * self.boost(hidden_states, *self.given)  # Eq. (5)
        if hidden_states.shape[0] % 2:
            raise ValueError(f"the dual-stream batch [input; condition] must be even, got {hidden_states.shape[0]}")
        half = hidden_states.shape[0] // 2  # slices, not chunk(): exports without SplitToSequence
        f_x, f_y = hidden_states[:half], hidden_states[half:]
        k_y, v_y = self.condition_kv(f_y)
        f_ro = self.boost(f_x, k_y, v_y)
        joint = out[:half] + self.phi * f_ro  # Eq. (5)
        return torch.cat([joint, out[half:]])


def add_boosthub(unet: UNet2DConditionModel) -> dict[str, BoostHubProcessor]:
    """Put a fresh BoostHub beside every ``attn1`` of a diffusers UNet; other layers keep theirs.

    Call before adding LoRA (peft freezes what exists when it is added). Returns the new
    processors by attention-layer name.
    """
    # every attention layer: set_attn_processor needs all (Any: diffusers' processor union omits custom ones)
    processors: dict[str, Any] = dict(unet.attn_processors)
    added: dict[str, BoostHubProcessor] = {}
    modules = dict(unet.named_modules())
    for name in processors:
        layer = name.removesuffix(".processor")
        if layer.endswith("attn1"):
            added[layer] = BoostHubProcessor(modules[layer])
            processors[name] = added[layer]
    if not added:
        raise ValueError("the UNet has no self-attention (attn1) layers to put BoostHub beside")
    unet.set_attn_processor(processors)
    return added


def set_attention_upcast(unet: UNet2DConditionModel, upcast: bool) -> None:
    """Every attention of the UNet in float32 (``upcast``) or in the model's dtype (SDPA as usual).

    BoostHub processors keep their weights and switch in place; the other layers (cross-attention)
    get :class:`Fp32AttnProcessor` or ``AttnProcessor2_0``.
    """
    processors: dict[str, Any] = {}  # Any: diffusers' processor union omits custom ones
    for name, processor in unet.attn_processors.items():
        if isinstance(processor, BoostHubProcessor):
            processor.upcast = upcast
            processors[name] = processor
        else:
            processors[name] = Fp32AttnProcessor() if upcast else AttnProcessor2_0()
    unet.set_attn_processor(processors)


def boosthub_processors(unet: UNet2DConditionModel) -> list[BoostHubProcessor]:
    """Every BoostHub of the UNet; raises if any ``attn1`` lost its BoostHub.

    ``set_attn_processor(AttnProcessor2_0())`` and ``fuse_qkv_projections()`` silently replace
    processors; this check turns that into an error instead of a wrong model.
    """
    found: list[BoostHubProcessor] = []
    for name, processor in unet.attn_processors.items():
        if name.removesuffix(".processor").endswith("attn1"):
            if not isinstance(processor, BoostHubProcessor):
                raise RuntimeError(
                    f"{name} is {type(processor).__name__}, not BoostHub: something replaced the "
                    f"attention processors (set_attn_processor / fuse_qkv_projections); rebuild the "
                    f"model with flipnet_rt.models.build_unet"
                )
            found.append(processor)
    return found
