"""Datasets concatenated, each whole or a random subset, in a per-epoch order: :class:`MixedDataset`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .seeding import STREAM_ORDER, STREAM_SUBSET, EpochDataset, EpochMixin, check_index, check_seed, item_rng


class MixedDataset(EpochMixin, Sequence):
    """Concatenation of datasets, each whole or a random subset, in a per-epoch order.

    Builds the degradation-mode mix of Sec. 4.2, e.g.
    ``[(dense_haze, None), (lol, None), (sidd, 1000), (realblur_j, 1000), (ffhq, 4000)]``.
    A ``count`` picks that many distinct items of the part, a subset fixed by ``seed``
    (the same every epoch, as the paper builds one training set). With ``shuffle`` the
    concatenation is permuted by (seed, epoch); iterate it sequentially then.
    ``set_epoch`` is forwarded to every part.

    Raises:
        ValueError: no parts, a count above the part's length, or parts of different
            resolutions.
    """

    def __init__(self, parts: Sequence[tuple[EpochDataset, int | None]], *, seed: int, shuffle: bool = True) -> None:
        if not parts:
            raise ValueError("MixedDataset: needs at least one (dataset, count) part")
        self.seed = check_seed("MixedDataset", seed)
        self.shuffle = shuffle
        self.parts = [dataset for dataset, _ in parts]
        resolutions = {getattr(d, "resolution", None) for d in self.parts}
        if len(resolutions) > 1:
            raise ValueError(f"MixedDataset: parts have different resolutions {sorted(map(str, resolutions))}")
        self.resolution = resolutions.pop()
        index: list[tuple[int, int]] = []
        for p, (dataset, count) in enumerate(parts):
            n = len(dataset)
            chosen: Sequence[int]
            if count is None:
                chosen = range(n)
            else:
                if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= n:
                    raise ValueError(
                        f"MixedDataset: part {p} ({type(dataset).__name__}) has {n} items; "
                        f"count must be in 1..{n} or None for all, got {count!r}"
                    )
                subset = item_rng(self.seed, 0, p, STREAM_SUBSET).choice(n, size=int(count), replace=False)
                chosen = sorted(subset.tolist())
            index.extend((p, i) for i in chosen)
        self._index = np.asarray(index, dtype=np.int64).reshape(-1, 2)
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        n = len(self._index)
        if not self.shuffle:
            return np.arange(n)
        return item_rng(self.seed, self.epoch, 0, STREAM_ORDER).permutation(n)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for part in self.parts:
            part.set_epoch(epoch)
        self._order = self._permutation()

    def locate(self, index: int) -> tuple[int, int]:
        """``(part number, index in that part)`` of item ``index`` in the current epoch."""
        p, i = self._index[self._order[check_index(index, len(self))]]
        return int(p), int(i)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        p, i = self.locate(index)
        return self.parts[p][i]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))
