"""Text conditions of a training batch: ``[B, 77, D]`` prompt embeddings, with the text drop.

With a text encoder (runs started from ``--sd-dir``), a sample's caption is embedded by the SD
folder's CLIP text encoder (embeddings cached per caption, least recently used dropped first); a
sample without a caption gets the mode's stored prompt (``restore`` / ``degrade``), the prompt
used at inference. Without one (from-scratch models) every sample gets the mode's stored prompt.
A dropped text (probability ``text_drop``, Sec. 5.1) is the empty prompt's embedding: CLIP("")
with an encoder, else zeros (= the stored ``degrade``/``negative`` embeddings of a from-scratch
model, train/base.py).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from flipnet_rt.models import FlipNet, Mode


class CaptionEncoder:
    """The SD folder's CLIP tokenizer + text encoder, frozen, with an LRU cache of embeddings."""

    def __init__(self, sd_dir: Path, length: int, cache_size: int) -> None:
        from transformers import CLIPTextModel, CLIPTokenizer

        root = Path(sd_dir)
        for sub in ("tokenizer", "text_encoder"):
            if not (root / sub).is_dir():
                raise FileNotFoundError(
                    f"--sd-dir {root}: {sub}/ missing; captions are embedded with the folder's text encoder"
                )
        self.tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
        self.encoder = CLIPTextModel.from_pretrained(root / "text_encoder", use_safetensors=True, local_files_only=True)
        self.encoder.requires_grad_(False).eval()
        self.length = length
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def to(self, device: torch.device) -> CaptionEncoder:
        self.encoder.to(device)  # type: ignore[arg-type]  # transformers' typed wrapper of to() misreads self
        return self

    @torch.no_grad()
    def __call__(self, captions: list[str]) -> torch.Tensor:
        """``[n, 77, D]`` float32 on the encoder's device."""
        device = next(self.encoder.parameters()).device
        missing = sorted({c for c in captions if c not in self._cache})
        if missing:
            ids = self.tokenizer(
                missing, padding="max_length", max_length=self.length, truncation=True, return_tensors="pt"
            ).input_ids.to(device)
            for caption, hidden in zip(missing, self.encoder(ids).last_hidden_state.float()):
                self._cache[caption] = hidden
        for c in captions:
            self._cache.move_to_end(c)
        out = torch.stack([self._cache[c] for c in captions])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out


class PromptBank:
    """Captions + drop mask -> text context ``[B, 77, D]`` for one mode."""

    def __init__(self, model: FlipNet, mode: Mode, encoder: CaptionEncoder | None) -> None:
        self.model = model
        self.default = "restore" if mode is Mode.RESTORE else "degrade"
        self.encoder = encoder

    def empty(self) -> torch.Tensor:
        """The empty prompt's embedding ``[77, D]``."""
        if self.encoder is not None:
            return self.encoder([""])[0]
        return torch.zeros_like(self.model.prompt(self.default))

    def __call__(self, captions: list[str], drop: torch.Tensor) -> torch.Tensor:
        """``drop``: bool ``[B]`` (True: text dropped). Returns float32 ``[B, 77, D]``."""
        default = self.model.prompt(self.default).float()
        rows = [default] * len(captions)
        if self.encoder is not None:
            written = [i for i, c in enumerate(captions) if c]
            if written:
                for i, e in zip(written, self.encoder([captions[i] for i in written])):
                    rows[i] = e.to(default.device)
        text = torch.stack(rows)
        mask = drop.to(text.device).view(-1, 1, 1)
        return torch.where(mask, self.empty().to(text.device).unsqueeze(0), text)
