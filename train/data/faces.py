"""HQ face images with on-the-fly LQ (Sec. 5.1, Eq. 9): :class:`HQFaceFolder`."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from flipnet_rt.evaluation.degradations import MakesLQ
from flipnet_rt.imaging.geometry import prepare_square
from flipnet_rt.imaging.io import ImageError, format_path, load_image

from .captions import CaptionIndex
from .files import list_images, pick_valid
from .items import make_item
from .seeding import FALLBACK_TRIES, STREAM_LQ, EpochMixin, check_index, check_resolution, check_seed, item_seed

logger = logging.getLogger(__name__)

#: LFW deep-funneled face box ``(left, top, right, bottom)`` (../shared/data/README.md).
LFW_CROP_BOX: tuple[int, int, int, int] = (50, 45, 200, 195)


class HQFaceFolder(EpochMixin, Sequence):
    """HQ face images of any size with on-the-fly LQ (Sec. 5.1, Eq. 9).

    Each image is cropped to ``crop_box`` (e.g. :data:`LFW_CROP_BOX`), center-cropped
    to a square and resized to ``resolution`` (Lanczos); the LQ is
    ``degradation(hq, item_seed(seed, epoch, index))``, a new one every epoch.

    Args:
        root: folder of images (walked recursively).
        resolution: training side R.
        degradation: the on-the-fly degradation (its config scaled to R, see
            :meth:`DegradationConfig.scaled_to`), or a :class:`flipnet_rt.evaluation.levels.LevelMix`.
        seed: dataset seed.
        crop_box: ``(left, top, right, bottom)`` applied before squaring, or None.
        limit: use only this many images, a random subset fixed by ``seed``.
        captions: from :func:`load_captions`; missing entries give ``""``.

    Attributes:
        files: the images used, sorted. skipped: ``(path, reason)`` of unreadable files.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        resolution: int,
        degradation: MakesLQ,
        *,
        seed: int,
        crop_box: Sequence[int] | None = None,
        limit: int | None = None,
        captions: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.resolution = check_resolution("HQFaceFolder", resolution)
        self.seed = check_seed("HQFaceFolder", seed)
        if crop_box is not None and (len(crop_box) != 4 or crop_box[2] <= crop_box[0] or crop_box[3] <= crop_box[1]):
            raise ValueError(
                f"HQFaceFolder: crop_box must be (left, top, right, bottom) with right > left "
                f"and bottom > top, got {crop_box!r}"
            )
        self.crop_box: tuple[int, int, int, int] | None = None
        if crop_box is not None:
            left, top, right, bottom = (int(v) for v in crop_box)
            self.crop_box = (left, top, right, bottom)
        self.degradation = degradation
        self.skipped: list[tuple[Path, str]] = []
        files = list_images(self.root)
        self.files: list[Path] = pick_valid(
            f"HQFaceFolder({format_path(self.root)})", files, lambda p: (p,), limit, self.seed, self.skipped
        )
        if not self.files:
            raise ValueError(f"{format_path(self.root)}: no readable images found (suffixes: png, jpg, ...)")
        self._captions = CaptionIndex(captions)
        logger.info("%s: %d HQ images (%d skipped)", format_path(self.root), len(self.files), len(self.skipped))

    def __len__(self) -> int:
        return len(self.files)

    def relative(self, index: int) -> PurePath:
        """Path of image ``index`` relative to ``root``."""
        return self.files[index].relative_to(self.root)

    def load_hq(self, index: int) -> tuple[np.ndarray, int, tuple[int, int]]:
        """``(hq [R, R, 3] uint8, file index, original (H, W))`` of item ``index``.

        The file index is ``index`` unless that file no longer decodes: then the next
        readable file is used (with a warning), so an epoch never stops on a bad file.
        """
        index = check_index(index, len(self))
        last: ImageError | None = None
        for k in range(min(FALLBACK_TRIES, len(self))):
            used = (index + k) % len(self)
            try:
                image = load_image(self.files[used])
            except ImageError as exc:
                logger.warning("%s; using the next image instead", exc)
                last = exc
                continue
            return prepare_square(image, self.resolution, self.crop_box), used, image.shape[:2]
        raise RuntimeError(f"{FALLBACK_TRIES} consecutive images failed to load, last: {last}")

    def caption(self, path: Path) -> str:
        """Caption of ``path`` (a file under ``root``), ``""`` if none."""
        found = self._captions(path.relative_to(self.root))
        return "" if found is None else found

    def on_the_fly(self, hq: np.ndarray, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The LQ of item ``index`` in the current epoch and its recorded params (with ``"seed"``)."""
        seed = item_seed(self.seed, self.epoch, index, STREAM_LQ)
        lq, params = self.degradation(hq, seed)
        return lq, {"seed": seed, **params.to_dict()}

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        hq, used, _ = self.load_hq(index)
        lq, params = self.on_the_fly(hq, check_index(index, len(self)))
        path = self.files[used]
        return make_item(hq, lq, self.caption(path), True, path, params)
