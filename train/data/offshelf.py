"""HQ faces whose LQ is, half of the time, an off-shelf variant written by ``flipnet-rt degrade``
(Sec. 5.1): :class:`OffShelfPool`."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

from flipnet_rt.imaging.geometry import prepare_square
from flipnet_rt.imaging.io import ImageError, format_path, load_image

from .faces import HQFaceFolder
from .files import list_images
from .items import make_item
from .seeding import STREAM_OFFSHELF, EpochMixin, check_index, check_seed, item_rng

logger = logging.getLogger(__name__)

_VARIANT = re.compile(r"^(?P<stem>.+)_v(?P<k>\d+)$")


class OffShelfPool(EpochMixin, Sequence):
    """HQ faces whose LQ is, with probability ``probability``, an off-shelf variant (Sec. 5.1).

    The pool is the folder written by ``flipnet-rt degrade HQ_ROOT -o POOL --variants K``:
    it mirrors the HQ folder's layout with ``<stem>_v{k}.png`` per HQ image (``<stem>.png``
    when K = 1). Per item a draw from (seed, epoch, index) picks off-shelf (then a
    uniformly random one of that image's variants) or on-the-fly. A variant with the
    HQ original's size gets the HQ's crop box and squaring; any other size is just
    squared and resized. HQ images without variants always use on-the-fly LQ (counted
    in ``.missing``, logged once); a variant that fails to load falls back to on-the-fly.

    Args:
        base: the HQ dataset (its files, geometry, captions and on-the-fly degradation).
        pool_dir: the ``flipnet-rt degrade`` output folder.
        seed: seed of the off-shelf/on-the-fly draws.
        probability: chance of an off-shelf LQ per item (the paper's 0.5).

    Items: ``"degradation"`` is ``{"offshelf": path, "variant": k}`` for an off-shelf LQ,
    the base's on-the-fly record otherwise.
    """

    def __init__(
        self,
        base: HQFaceFolder,
        pool_dir: str | os.PathLike[str],
        *,
        seed: int,
        probability: float = 0.5,
    ) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"OffShelfPool: probability must be in [0, 1], got {probability!r}")
        self.base = base
        self.pool_dir = Path(pool_dir)
        self.seed = check_seed("OffShelfPool", seed)
        self.probability = float(probability)
        self.resolution = base.resolution
        variants, exact = _pool_index(self.pool_dir)
        self.variants: list[list[tuple[int, Path]]] = []
        for i in range(len(base)):
            rel = base.relative(i)
            key = rel.parent / rel.stem
            found = variants.get(key) or ([(0, exact[key])] if key in exact else [])
            self.variants.append(sorted(found))
        self.missing = sum(1 for v in self.variants if not v)
        if self.missing:
            logger.warning(
                "OffShelfPool(%s): %d of %d HQ images have no off-shelf variant; they use on-the-fly LQ",
                format_path(self.pool_dir),
                self.missing,
                len(base),
            )

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.base.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        index = check_index(index, len(self))
        hq, used, original = self.base.load_hq(index)
        path = self.base.files[used]
        caption = self.base.caption(path)
        rng = item_rng(self.seed, self.epoch, index, STREAM_OFFSHELF)
        use_pool = rng.random() < self.probability
        choices = self.variants[used]
        if use_pool and choices:
            k, variant = choices[int(rng.integers(len(choices)))]
            try:
                image = load_image(variant)
            except ImageError as exc:
                logger.warning("%s; using on-the-fly LQ instead", exc)
            else:
                box = self.base.crop_box if image.shape[:2] == original else None
                lq = prepare_square(image, self.resolution, box)
                return make_item(hq, lq, caption, True, path, {"offshelf": str(variant), "variant": k})
        lq, params = self.base.on_the_fly(hq, index)
        return make_item(hq, lq, caption, True, path, params)


def _pool_index(pool_dir: Path) -> tuple[dict[PurePath, list[tuple[int, Path]]], dict[PurePath, Path]]:
    """``(variants by parent/stem, files by parent/stem)`` of the pool folder."""
    variants: dict[PurePath, list[tuple[int, Path]]] = {}
    exact: dict[PurePath, Path] = {}
    for path in list_images(pool_dir):
        rel = path.relative_to(pool_dir)
        exact[rel.parent / rel.stem] = path
        found = _VARIANT.match(rel.stem)
        if found:
            variants.setdefault(rel.parent / found["stem"], []).append((int(found["k"]), path))
    return variants, exact
