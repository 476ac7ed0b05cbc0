"""Stage timing for ``flipnet-rt bench``: wall-clock per named stage, synchronised on a GPU.

A :class:`StageTimer` handed to the Restorer records every stage of a call (preprocessing,
each network, the sampler update, postprocessing). ``sync`` is the backend's device barrier
(``torch.cuda.synchronize`` on a GPU, nothing on the CPU), called before each clock read so that
asynchronous launches are charged to the stage that issued them.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class StageTimer:
    """``sync``: the device barrier. ``keep``: record every call (percentiles for ``bench``); False
    keeps one running total per stage instead, so a timer on a long stream (a video's frames, from
    several threads) stays the same size."""

    def __init__(self, sync: Callable[[], None] | None = None, keep: bool = True) -> None:
        self.sync = sync or (lambda: None)
        self.keep = keep
        self.records: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            elapsed = time.perf_counter() - start
            with self._lock:
                record = self.records[name]
                if self.keep or not record:
                    record.append(elapsed)
                else:
                    record[0] += elapsed

    def reset(self) -> None:
        self.records.clear()

    def totals(self) -> dict[str, float]:
        return {name: sum(values) for name, values in self.records.items()}
