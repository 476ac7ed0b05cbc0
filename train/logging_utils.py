"""Loss logging: one CSV row and TensorBoard scalars per logged step (main process only).

``<output_dir>/metrics.csv``: ``step, samples, lr, seconds, <term>...``, every loss term of the
stage as its own column, averaged over the steps since the previous row (the first row is step 1
alone). ``<output_dir>/tensorboard/``: the same values, tag ``loss/<term>`` and ``lr``.
On resume, rows after the resumed step (written by the interrupted run) are dropped first.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

FIXED_COLUMNS = ("step", "samples", "lr", "seconds")


class MetricsLogger:
    """Appends rows of ``{term: value}``; a term missing from a row is written empty (not active yet)."""

    def __init__(self, output_dir: Path, terms: Sequence[str], *, enabled: bool, resume_step: int = 0) -> None:
        self.terms = tuple(terms)
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.csv"
        self._writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._restart_csv(resume_step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(
                log_dir=str(Path(output_dir) / "tensorboard"), purge_step=resume_step + 1 if resume_step else None
            )
        except ImportError:  # tensorboard is in the `train` extra; the CSV is enough without it
            log.warning("tensorboard is not installed: logging to %s only (pip install 'flipnet-rt[train]')", self.path)

    def _restart_csv(self, resume_step: int) -> None:
        header = list(FIXED_COLUMNS) + list(self.terms)
        rows: list[list[str]] = []
        if resume_step and self.path.is_file():
            with self.path.open(newline="") as f:
                reader = csv.reader(f)
                old_header = next(reader, None)
                if old_header == header:
                    rows = [r for r in reader if r and int(r[0]) <= resume_step]
        with self.path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    def log(self, step: int, samples: int, lr: float, seconds: float, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        unknown = set(values) - set(self.terms)
        if unknown:
            raise KeyError(f"loss terms {sorted(unknown)} were not declared by the stage")
        row = [str(step), str(samples), f"{lr:.6g}", f"{seconds:.3f}"]
        row += ["" if t not in values else f"{values[t]:.6g}" for t in self.terms]
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow(row)
        if self._writer is not None:
            for term, value in values.items():
                if math.isfinite(value):
                    self._writer.add_scalar(f"loss/{term}", value, step)
            self._writer.add_scalar("lr", lr, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a metrics.csv as dicts of floats (empty cells left out)."""
    with Path(path).open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
