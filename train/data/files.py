"""Image files for the datasets: recursive sorted listing, a cheap header check, and the pick of
readable files (all, or a seeded random subset).

Folders are walked recursively in sorted order, skipping hidden entries; suffixes are
:data:`flipnet_rt.jobs.batchio.IMAGE_SUFFIXES`. A file whose header does not check is skipped with a
logged warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from flipnet_rt.imaging.io import MAX_PIXELS, READ_FORMATS, format_path
from flipnet_rt.jobs.batchio import is_image_path

from .seeding import STREAM_SUBSET, item_rng

logger = logging.getLogger(__name__)


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``root``, recursively, sorted; hidden files and folders skipped.

    Raises:
        FileNotFoundError / NotADirectoryError: ``root`` is missing or a file.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{format_path(root)}: image folder not found; check the path")
    if not root.is_dir():
        raise NotADirectoryError(f"{format_path(root)}: not a folder; pass the folder that holds the images")
    found: list[Path] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(folder, n) for n in sorted(filenames) if not n.startswith(".") and is_image_path(n))
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def header_problem(path: Path) -> str | None:
    """Cheap validity check: ``None``, or why :func:`~flipnet_rt.imaging.io.load_image` would refuse
    the file (Pillow opens it with the formats ``load_image`` reads, checks the pixel count
    against ``MAX_PIXELS`` and runs ``verify()``, which reads headers, not pixels)."""
    Image.init()
    formats = [name for name in READ_FORMATS if name in Image.OPEN]
    try:
        with Image.open(path, formats=formats) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                return f"image too large: {width}x{height}, over {MAX_PIXELS:,} pixels"
            image.verify()
    except Exception as exc:  # noqa: BLE001 -- any failure on untrusted bytes means "skip this file"
        return f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'unreadable'}"
    return None


def pick_valid(
    where: str,
    candidates: Sequence[Any],
    paths: Callable[[Any], Sequence[Path]],
    limit: int | None,
    seed: int,
    skipped: list[tuple[Path, str]],
) -> list[Any]:
    """Header-check ``candidates`` (all, or in a seeded random order until ``limit`` are good).

    Bad files go to ``skipped`` with a warning. The result keeps the candidates' order.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"{where}: limit must be a positive integer or None, got {limit!r}")
    order: Sequence[int] = range(len(candidates))
    if limit is not None:
        order = item_rng(seed, 0, 0, STREAM_SUBSET).permutation(len(candidates)).tolist()
    chosen: list[int] = []
    for i in order:
        if limit is not None and len(chosen) == limit:
            break
        problems = [(p, r) for p in paths(candidates[i]) if (r := header_problem(p)) is not None]
        if problems:
            for path, reason in problems:
                logger.warning("%s: skipped, not a readable image (%s)", format_path(path), reason)
            skipped.extend(problems)
            continue
        chosen.append(i)
    if limit is not None and len(chosen) < limit:
        logger.warning("%s: limit %d asked, only %d readable items available", where, limit, len(chosen))
    return [candidates[i] for i in sorted(chosen)]
