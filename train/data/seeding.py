"""What every dataset shares: seeded draws by (seed, epoch, index), ``set_epoch``, argument and
index checks, the bad-file fallback count.

Random draws use ``numpy.random.SeedSequence([seed, epoch, index, stream])``: an item is a pure
function of (dataset seed, epoch, index), whatever the worker process or reading order.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

# Random streams (the last SeedSequence word): per item (seed, epoch, index, stream) ...
STREAM_LQ, STREAM_CROP, STREAM_OFFSHELF = 0, 1, 2
# ... and per dataset: fixed subsets (seed, 0, part, 3), per-epoch order (seed, epoch, 0, 4).
STREAM_SUBSET, STREAM_ORDER = 3, 4
#: How many following files a dataset tries when one no longer decodes.
FALLBACK_TRIES = 8


def item_seed(seed: int, epoch: int, index: int, stream: int = STREAM_LQ) -> int:
    """A 63-bit seed that is a pure function of its arguments (all non-negative ints)."""
    state = np.random.SeedSequence([seed, epoch, index, stream]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def item_rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    """The generator of ``SeedSequence([seed, epoch, index, stream])``."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, index, stream]))


def check_seed(where: str, seed: int) -> int:
    """``seed`` as an ``int``; ValueError naming ``where`` unless it is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{where}: seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_resolution(where: str, resolution: int) -> int:
    """``resolution`` as an ``int``; ValueError naming ``where`` unless it is a positive integer."""
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
        raise ValueError(f"{where}: resolution must be a positive integer, got {resolution!r}")
    return int(resolution)


def check_index(index: int, length: int) -> int:
    """``index`` in ``[0, length)`` (negative indices count from the end); TypeError / IndexError."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"dataset index must be an integer, got {type(index).__name__}")
    if not -length <= index < length:
        raise IndexError(f"dataset index {index} out of range for {length} items")
    return int(index) % length


class EpochDataset(Protocol):
    """What training reads: items by index, for the epoch last given to ``set_epoch``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> Any: ...

    def set_epoch(self, epoch: int) -> None: ...


class EpochMixin:
    """``set_epoch``/``epoch`` shared by the datasets."""

    _epoch: int = 0

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose items ``__getitem__`` returns (exact resume: set it again)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"set_epoch: epoch must be a non-negative integer, got {epoch!r}")
        self._epoch = int(epoch)
