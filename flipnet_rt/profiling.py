"""Stage timing for ``flipnet-rt bench``: wall-clock per named stage, synchronised on a GPU.

A :class:`StageTimer` handed to the Restorer records every stage of a call (preprocessing,
each network, the sampler update, postprocessing). ``sync`` is the backend's device barrier
(``torch.cuda.synchronize`` on a GPU, nothing on the CPU), called before each clock read so that
asynchronous launches are charged to the stage that issued them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Iterator


class StageTimer:
    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync or (lambda: None)
        self.records: dict[str, list[float]] = defaultdict(list)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.records[name].append(time.perf_counter() - start)

    def reset(self) -> None:
        self.records.clear()

    def totals(self) -> dict[str, float]:
        return {name: sum(values) for name, values in self.records.items()}
