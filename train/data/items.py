"""The item every dataset returns, and ``collate``, which stacks items into a batch.

An item is a dict with exactly the keys listed in :mod:`flipnet_rt.train.data`'s docstring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def make_item(
    hq: np.ndarray, lq: np.ndarray, caption: str, face: bool, source: Path, degradation: dict[str, Any] | None
) -> dict[str, Any]:
    """One item: ``hq``/``lq`` ``uint8 [R, R, 3]`` RGB, ``source`` stored as ``str``."""
    return {"hq": hq, "lq": lq, "caption": caption, "face": face, "source": str(source), "degradation": degradation}


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch: ``"hq"``/``"lq"`` ``uint8 [B, R, R, 3]``, ``"face"`` ``bool [B]``,
    lists for ``"caption"``, ``"source"`` and ``"degradation"`` (None entries kept).

    Use as a DataLoader ``collate_fn`` (torch's default cannot batch ``None`` or dicts
    whose keys differ between on-the-fly and off-shelf items).
    """
    if not items:
        raise ValueError("collate: empty batch")
    return {
        "hq": np.stack([it["hq"] for it in items]),
        "lq": np.stack([it["lq"] for it in items]),
        "caption": [it["caption"] for it in items],
        "face": np.array([bool(it["face"]) for it in items], dtype=bool),
        "source": [it["source"] for it in items],
        "degradation": [it["degradation"] for it in items],
    }
