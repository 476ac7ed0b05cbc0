"""``restore`` and ``degrade`` over files and folders: load, run in batches, write atomically.

A bad input (missing, unreadable, corrupt, not an image, too large) costs one line on stderr
and its own output only; the rest of the batch goes on and the exit status is 1 at the end.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from ..batchio import BatchReport, Job, batched, plan_jobs
from ..imaging.io import ImageError, load_image, save_image

log = logging.getLogger(__name__)


class UsageError(RuntimeError):
    """A problem with the command as a whole (model, device): reported once, exit status 2."""


def load_restorer(args: argparse.Namespace):
    """The Restorer for --model on --backend (auto: the fastest that can run here)."""
    from ..restorer import Restorer

    try:
        restorer = Restorer.load(args.model, backend=args.backend, device=args.device, cond_cache=args.cond_cache,
                                 cuda_graphs=args.cuda_graphs, compile=args.compile)
        options = restorer.options(
            sampler=args.sampler, steps=args.steps, spacing=args.spacing, guidance=args.guidance,
            phi=args.phi, t_cond=args.t_cond, strength=args.strength, eta=args.eta, seed=args.seed,
            color_fix=args.color_fix,
        )
    except (OSError, ValueError, KeyError) as exc:  # BackendUnavailable and EngineError are ValueErrors
        raise UsageError(f"--model {args.model}: {exc}") from None
    return restorer, options


def run_jobs(args: argparse.Namespace, *, variants: int = 1) -> int:
    from tqdm import tqdm

    from ..options import image_seed

    jobs, report_errors = plan_jobs(args.inputs, args.output, variants=variants)
    report = BatchReport(written=[], errors=list(report_errors))
    for line in report_errors:
        print(f"error: {line}", file=sys.stderr)
    if not jobs:
        print("error: no input images to process", file=sys.stderr)
        return 1
    try:
        restorer, options = load_restorer(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run = restorer.restore if args.command == "restore" else restorer.degrade

    with tqdm(total=len(jobs), desc=args.command, unit="img", disable=None, file=sys.stderr) as bar:
        for batch in batched(jobs, args.batch_size):
            loaded = _load_batch(batch, report)
            if loaded:
                ready, images = zip(*loaded)
                seeds = [image_seed(options.seed, job.index) for job in ready]
                try:
                    outputs = run(list(images), options, seeds)
                except (RuntimeError, ValueError) as exc:  # e.g. out of memory: these images fail, the rest go on
                    for job in ready:
                        _fail(report, f"{job.source}: inference failed ({exc})")
                else:
                    for job, image in zip(ready, outputs):
                        _write(job, image, report)
            bar.update(len(batch))

    done = f"{args.command}: wrote {len(report.written)} image(s) to {args.output}"
    if report.errors:
        done += f"; {len(report.errors)} failed (see the errors above)"
    print(done, file=sys.stderr)
    return report.exit_code


def _load_batch(batch: list[Job], report: BatchReport) -> list[tuple[Job, np.ndarray]]:
    loaded = []
    for job in batch:
        try:
            loaded.append((job, load_image(job.source)))
        except ImageError as exc:
            _fail(report, str(exc))
    return loaded


def _write(job: Job, image: np.ndarray, report: BatchReport) -> None:
    try:
        save_image(image, job.output)
    except OSError as exc:
        _fail(report, f"{job.output}: cannot write ({exc.strerror or exc}); check the folder's permissions and space")
    else:
        report.written.append(Path(job.output))


def _fail(report: BatchReport, line: str) -> None:
    from tqdm import tqdm

    report.errors.append(line)
    tqdm.write(f"error: {line}", file=sys.stderr)  # keeps the progress bar intact
