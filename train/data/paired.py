"""Real-world HQ/LQ pairs (Sec. 4.2: Dense-Haze, LOL, SIDD, RealBlur-J): :class:`PairedFolder`, :class:`PairFit`."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from flipnet_rt.imaging.geometry import prepare_square
from flipnet_rt.imaging.io import ImageError, format_path, load_image

from .captions import CaptionIndex
from .files import list_images, pick_valid
from .items import make_item
from .seeding import FALLBACK_TRIES, STREAM_CROP, EpochMixin, check_index, check_resolution, check_seed, item_rng

logger = logging.getLogger(__name__)


class PairFit(str, Enum):
    """How a real-world pair is brought to R x R (same geometry for HQ and LQ)."""

    #: Random R x R crop at native pixel scale (a new position every epoch); images
    #: smaller than R are first enlarged so the shorter side is R. Keeps the per-pixel
    #: statistics (noise, blur extent) that degradation mode learns. The default.
    CROP = "crop"
    #: Center square resized to R (Lanczos): the whole scene, degradations shrunk.
    RESIZE = "resize"


class PairedFolder(EpochMixin, Sequence):
    """Real-world HQ/LQ pairs (Sec. 4.2: Dense-Haze, LOL, SIDD, RealBlur-J), ``face=False``.

    Files pair by key: the path relative to its folder without the suffix (so
    ``hq/a.png`` pairs ``lq/a.jpg``; flat folders pair by stem). Datasets that name
    the two sides differently set ``key_pattern``, a regex searched in that relative
    POSIX path-without-suffix whose groups, joined by ``"/"``, form the key (e.g.
    Dense-Haze ``r"^(\\d+)_(?:GT|hazy)$"``; RealBlur-J ``r"(scene\\d+)/(?:gt|blur)/(?:gt|blur)_(\\d+)$"``).
    Files without a partner (or with a key used twice on one side, or not matching
    the pattern) are logged in one warning and listed in ``.unmatched``.

    When the LQ image's size differs from the HQ's, the LQ is first resized to the
    HQ size (bicubic). Then :class:`PairFit` decides the geometry.

    Args:
        hq_dir, lq_dir: the two folders (may be the same folder with a ``key_pattern``).
        resolution: training side R.
        limit: use this many random pairs, fixed by ``seed`` (the paper: 1000 of SIDD
            and of RealBlur-J); None for all.
        seed: dataset seed (subset, crop positions).
        fit: :class:`PairFit`.
        key_pattern: see above.
        captions: looked up by the HQ file, then the LQ file; missing gives ``""``.

    Attributes:
        pairs: ``(hq_path, lq_path)`` sorted by key. unmatched: files without a
        partner. skipped: ``(path, reason)`` of unreadable files.
    """

    def __init__(
        self,
        hq_dir: str | os.PathLike[str],
        lq_dir: str | os.PathLike[str],
        resolution: int,
        *,
        limit: int | None = None,
        seed: int,
        fit: PairFit | str = PairFit.CROP,
        key_pattern: str | None = None,
        captions: Mapping[str, str] | None = None,
    ) -> None:
        self.hq_dir, self.lq_dir = Path(hq_dir), Path(lq_dir)
        self.resolution = check_resolution("PairedFolder", resolution)
        self.seed = check_seed("PairedFolder", seed)
        try:
            self.fit = PairFit(fit)
        except ValueError:
            raise ValueError(f"PairedFolder: fit must be one of {[f.value for f in PairFit]}, got {fit!r}") from None
        try:
            pattern = None if key_pattern is None else re.compile(key_pattern)
        except re.error as exc:
            raise ValueError(f"PairedFolder: key_pattern {key_pattern!r} is not a valid regex ({exc})") from None
        hq = _keyed(self.hq_dir, pattern)
        lq = _keyed(self.lq_dir, pattern)
        self.unmatched: list[Path] = sorted(
            hq.unmatched
            + lq.unmatched
            + [p for k, p in hq.files.items() if k not in lq.files]
            + [p for k, p in lq.files.items() if k not in hq.files]
        )
        if self.unmatched:
            names = ", ".join(format_path(p) for p in self.unmatched[:5])
            more = f" and {len(self.unmatched) - 5} more" if len(self.unmatched) > 5 else ""
            logger.warning(
                "PairedFolder(%s, %s): %d files without a partner, ignored: %s%s",
                format_path(self.hq_dir),
                format_path(self.lq_dir),
                len(self.unmatched),
                names,
                more,
            )
        candidates = [(hq.files[k], lq.files[k]) for k in sorted(hq.files) if k in lq.files]
        self.skipped: list[tuple[Path, str]] = []
        self.pairs: list[tuple[Path, Path]] = pick_valid(
            f"PairedFolder({format_path(self.hq_dir)})", candidates, lambda pair: pair, limit, self.seed, self.skipped
        )
        if not self.pairs:
            raise ValueError(
                f"PairedFolder: no readable pairs between {format_path(self.hq_dir)} and {format_path(self.lq_dir)}; "
                "files pair by relative path without suffix (set key_pattern for other naming schemes)"
            )
        self._captions = CaptionIndex(captions)
        logger.info("PairedFolder(%s): %d pairs", format_path(self.hq_dir), len(self.pairs))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        index = check_index(index, len(self))
        last: ImageError | None = None
        for k in range(min(FALLBACK_TRIES, len(self))):
            hq_path, lq_path = self.pairs[(index + k) % len(self)]
            try:
                hq_image, lq_image = load_image(hq_path), load_image(lq_path)
            except ImageError as exc:
                logger.warning("%s; using the next pair instead", exc)
                last = exc
                continue
            hq, lq = self._geometry(hq_image, lq_image, index)
            caption = self._captions(hq_path.relative_to(self.hq_dir))
            if caption is None:
                caption = self._captions(lq_path.relative_to(self.lq_dir))
            return make_item(hq, lq, caption or "", False, hq_path, None)
        raise RuntimeError(f"{FALLBACK_TRIES} consecutive pairs failed to load, last: {last}")

    def _geometry(self, hq: np.ndarray, lq: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        r = self.resolution
        if lq.shape != hq.shape:
            lq = _resize_to(lq, hq.shape[0], hq.shape[1], Image.Resampling.BICUBIC)
        if self.fit is PairFit.RESIZE:
            return prepare_square(hq, r), prepare_square(lq, r)
        h, w = hq.shape[:2]
        if min(h, w) < r:
            f = r / min(h, w)
            h, w = max(r, round(h * f)), max(r, round(w * f))
            hq = _resize_to(hq, h, w, Image.Resampling.LANCZOS)
            lq = _resize_to(lq, h, w, Image.Resampling.LANCZOS)
        rng = item_rng(self.seed, self.epoch, index, STREAM_CROP)
        top, left = int(rng.integers(h - r + 1)), int(rng.integers(w - r + 1))
        crop = (slice(top, top + r), slice(left, left + r))
        return np.ascontiguousarray(hq[crop]), np.ascontiguousarray(lq[crop])


def _resize_to(image: np.ndarray, h: int, w: int, method: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((w, h), method), dtype=np.uint8)


class _Keyed:
    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self.unmatched: list[Path] = []


def _keyed(root: Path, pattern: re.Pattern[str] | None) -> _Keyed:
    """Files under ``root`` by pairing key; duplicates and non-matching names go to ``unmatched``."""
    out = _Keyed()
    duplicates: set[str] = set()
    for path in list_images(root):
        rel = path.relative_to(root).with_suffix("").as_posix()
        key = rel
        if pattern is not None:
            found = pattern.search(rel)
            if found is None:
                out.unmatched.append(path)
                continue
            key = "/".join(g or "" for g in found.groups()) if found.groups() else found.group(0)
        if key in out.files:
            duplicates.add(key)
            out.unmatched.append(path)
            continue
        out.files[key] = path
    for key in duplicates:
        out.unmatched.append(out.files.pop(key))
    return out
