"""The training order of samples, split over processes, resumable at any step.

Sample ``k`` of a run (k = 0, 1, ...) is item ``perm(seed, e)[k % n]`` of epoch ``e = k // n``,
where ``perm`` is a seeded permutation of the ``n`` items. Optimizer step ``s`` consumes samples
``[s * B, (s + 1) * B)`` (B = ``run.batch_size``, the global batch); micro-step ``m`` of the
gradient accumulation takes the m-th slice of that, and process ``p`` the p-th slice of the
micro-batch. Because dataset items are pure functions of (seed, epoch, index), a resumed run
continues at ``samples = step * B`` with exactly the items an uninterrupted run would have read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .config import ConfigError
from .data.seeding import EpochDataset


@dataclass(frozen=True)
class Layout:
    """How the global batch splits: ``batch_size = accumulation * processes * per_process``."""

    batch_size: int
    accumulation: int
    processes: int

    @property
    def micro_batch(self) -> int:
        """Samples of one micro-step over all processes."""
        return self.batch_size // self.accumulation

    @property
    def per_process(self) -> int:
        return self.micro_batch // self.processes

    def check(self) -> Layout:
        if self.batch_size % (self.accumulation * self.processes):
            raise ConfigError(
                f"run.batch_size {self.batch_size} is not divisible by run.gradient_accumulation "
                f"{self.accumulation} x {self.processes} processes; change one of them"
            )
        return self


def position(samples: int, n: int) -> dict[str, int]:
    """The data position after ``samples`` samples of a dataset of ``n`` items: epoch + index."""
    return {"samples": samples, "epoch": samples // n, "index": samples % n}


class RunOrder(Sampler):
    """This process's keys ``(epoch, item)`` from optimizer step ``start_step`` on, endlessly."""

    def __init__(self, n: int, seed: int, layout: Layout, rank: int, start_step: int = 0) -> None:
        if n < 1:
            raise ValueError("the training dataset is empty")
        self.n, self.seed, self.layout, self.rank, self.start_step = n, seed, layout, rank, start_step
        self._perm: tuple[int, np.ndarray] | None = None

    def permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, 0x5EED]))
            self._perm = (epoch, rng.permutation(self.n))
        return self._perm[1]

    def key(self, sample: int) -> tuple[int, int]:
        epoch = sample // self.n
        return epoch, int(self.permutation(epoch)[sample % self.n])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        lay = self.layout
        micro = self.start_step * lay.accumulation
        while True:
            first = micro * lay.micro_batch + self.rank * lay.per_process
            for sample in range(first, first + lay.per_process):
                yield self.key(sample)
            micro += 1

    def __len__(self) -> int:  # endless; DataLoader only needs this for len(loader)
        return 2**62


class EpochKeyed(Dataset):
    """``dataset[(epoch, index)]``: sets the epoch (in whichever worker reads it), then reads."""

    def __init__(self, dataset: EpochDataset) -> None:
        self.dataset = dataset
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        if epoch != self._epoch:
            self.dataset.set_epoch(epoch)
            self._epoch = epoch
        return self.dataset[index]


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Items -> ``hq``/``lq`` uint8 tensors ``[B, R, R, 3]``, ``face`` bool ``[B]``, ``caption`` list."""
    from .data import collate as stack

    batch = stack(items)
    return {
        "hq": torch.from_numpy(batch["hq"]),
        "lq": torch.from_numpy(batch["lq"]),
        "face": torch.from_numpy(batch["face"]),
        "caption": batch["caption"],
    }


def make_loader(
    dataset: EpochDataset, *, seed: int, layout: Layout, rank: int, start_step: int, num_workers: int
) -> DataLoader:
    """An endless loader of this process's micro-batches from ``start_step`` on."""
    order = RunOrder(len(dataset), seed, layout, rank, start_step)
    return DataLoader(
        EpochKeyed(dataset),
        batch_size=layout.per_process,
        sampler=order,
        num_workers=num_workers,
        collate_fn=collate,
        persistent_workers=num_workers > 0,
        drop_last=False,
    )


def to_images(pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``[B, R, R, 3]`` -> float32 ``[B, 3, R, R]`` in [-1, 1] on ``device``."""
    x = pixels.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0
