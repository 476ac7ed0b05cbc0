"""``restore`` and ``degrade`` over files and folders: load, run in batches, write atomically.

``restore`` takes whole images by default: every face is detected, aligned, restored (all faces
of a batch of images in one core call) and pasted back (:mod:`flipnet_rt.faces`); an image with no
face is written unchanged with a warning. ``--aligned`` (and ``degrade``) take face crops.
A bad input (missing, unreadable, corrupt, not an image, too large) costs one line on stderr
and its own output only; the rest of the batch goes on and the exit status is 1 at the end.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from ..imaging.io import ImageError, load_image, save_image
from ..jobs.batchio import BatchReport, Job, batched, plan_jobs

log = logging.getLogger(__name__)


class UsageError(RuntimeError):
    """A problem with the command as a whole (model, device): reported once, exit status 2."""


def load_restorer(args: argparse.Namespace, threads: int | None = None):
    """The Restorer for --model on --backend (auto: the fastest that can run here); ``threads``:
    ONNX Runtime CPU intra-op threads (None: its default)."""
    from ..backends.registry import BackendOptions
    from ..runtime.restorer import Restorer

    try:
        restorer = Restorer.load(
            args.model,
            backend=args.backend,
            device=args.device,
            cond_cache=args.cond_cache,
            options=BackendOptions(
                cuda_graphs=args.cuda_graphs, compile=args.compile, low_memory=args.low_memory, threads=threads
            ),
        )
    except (OSError, ValueError, KeyError) as exc:  # BackendUnavailable and EngineError are ValueErrors
        raise UsageError(f"--model {args.model}: {exc}") from None
    try:
        options = restorer.options(**sampling_overrides(args))
    except ValueError as exc:  # the option's own message names it ("steps: 0; use 1 or more")
        restorer.close()
        raise UsageError(str(exc)) from None
    return restorer, options


def sampling_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The sampling flags as ``SamplingOptions`` overrides (None: the model's default)."""
    return dict(
        sampler=args.sampler,
        steps=args.steps,
        spacing=args.spacing,
        guidance=args.guidance,
        phi=args.phi,
        t_cond=args.t_cond,
        strength=args.strength,
        eta=args.eta,
        seed=args.seed,
        color_fix=args.color_fix,
    )


def variants_arg(parser: argparse.ArgumentParser) -> None:
    """``--variants K`` (degrade, cluster degrade)."""
    parser.add_argument("--variants", type=int, default=1, metavar="K", help="degraded versions per image")


def run_jobs(args: argparse.Namespace, *, variants: int = 1) -> int:
    from tqdm import tqdm

    from ..config.options import key_seed

    jobs, report_errors = plan_jobs(args.inputs, args.output, variants=variants)
    report = BatchReport(written=[], errors=list(report_errors))
    for line in report_errors:
        print(f"error: {line}", file=sys.stderr)
    if not jobs:
        print("error: no input images to process", file=sys.stderr)
        return 1
    try:
        restorer, options = load_restorer(args)
        run = _runner(args, restorer, options)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    with tqdm(total=len(jobs), desc=args.command, unit="img", disable=None, file=sys.stderr) as bar:
        for batch in batched(jobs, args.batch_size):
            loaded = _load_batch(batch, report, run)
            if loaded:
                ready, images = zip(*loaded)
                seeds = [key_seed(options.seed, job.key, job.variant) for job in ready]
                try:
                    outputs = run(list(images), seeds)
                except (RuntimeError, ValueError) as exc:  # e.g. out of memory: these images fail, the rest go on
                    for job in ready:
                        _fail(report, f"{job.source}: inference failed ({exc})")
                        run.failed(job, str(exc))
                else:
                    for job, image, seed, output in zip(ready, images, seeds, outputs):
                        _write(job, run.finish(job, image, seed, output), report)
            bar.update(len(batch))
    run.close(report)

    done = f"{args.command}: wrote {len(report.written)} image(s) to {args.output}"
    if report.errors:
        done += f"; {len(report.errors)} failed (see the errors above)"
    print(done, file=sys.stderr)
    return report.exit_code


def _runner(args: argparse.Namespace, restorer, options) -> _Crops | _WholeImages:
    if args.command == "degrade":
        return _Crops(lambda images, seeds: restorer.degrade(images, options, seeds))
    from .faces import DETECTOR_FIELDS, build_face_restorer
    from .flags import usage_message

    try:
        faces = build_face_restorer(args, restorer, options)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        raise UsageError(usage_message(exc, DETECTOR_FIELDS)) from None
    if args.aligned:
        return _Crops(lambda images, seeds: faces.restore_crops(images, seeds, options))
    return _WholeImages(faces, args)


class _Crops:
    """Face crops in, the same size out (``degrade``, ``restore --aligned``)."""

    def __init__(self, run) -> None:
        self._run = run

    def __call__(self, images: list[np.ndarray], seeds: list[int]) -> list:
        return self._run(images, seeds)

    def finish(self, job: Job, image: np.ndarray, seed: int, output: np.ndarray) -> np.ndarray:
        return output

    def failed(self, job: Job, error: str) -> None:
        pass

    def close(self, report: BatchReport) -> None:
        pass


class _WholeImages:
    """Whole images: every face restored and pasted back; ``--report`` and ``--save-faces`` kept."""

    def __init__(self, faces, args: argparse.Namespace) -> None:
        self.faces = faces
        self.args = args
        self.entries: list[dict] = []

    def __call__(self, images: list[np.ndarray], seeds: list[int]) -> list:
        return self.faces.restore_images(images, seeds)

    def finish(self, job: Job, image: np.ndarray, seed: int, output: tuple) -> np.ndarray:
        from ..faces.report import image_entry, save_faces

        restored, results = output
        if not any(r.restored for r in results):
            why = "no face found" if not results else "no face selected (see --max-faces, --min-face-size)"
            tqdm_warn(f"warning: {job.source}: {why}; written unchanged")
        if self.args.report:  # kept for the report only (a long job's entries would only grow)
            self.entries.append(image_entry(str(job.source), image.shape, results, seed=seed, output=str(job.output)))
        if self.args.save_faces:
            stem = job.output.relative_to(self.args.output).with_suffix("").as_posix().replace("/", "__")
            save_faces(self.args.save_faces, stem, results)
        return restored

    def failed(self, job: Job, error: str) -> None:
        from ..faces.report import image_entry

        if self.args.report:
            self.entries.append(image_entry(str(job.source), (), [], error=error))

    def close(self, report: BatchReport) -> None:
        if self.args.report:
            from ..faces.report import write_report

            meta = {
                "model": str(self.args.model),
                "seed": self.args.seed,
                "detector": self.args.detector,
                "detect_size": self.args.detect_size,
                "detect_angles": list(self.args.detect_angles or (0,)),
                "errors": list(report.errors),
            }
            write_report(self.args.report, self.entries, meta)


def tqdm_warn(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def _load_batch(batch: list[Job], report: BatchReport, run) -> list[tuple[Job, np.ndarray]]:
    loaded = []
    for job in batch:
        try:
            loaded.append((job, load_image(job.source)))
        except ImageError as exc:
            _fail(report, str(exc))
            run.failed(job, str(exc))
    return loaded


def _write(job: Job, image: np.ndarray, report: BatchReport) -> None:
    try:
        save_image(image, job.output)
    except OSError as exc:
        _fail(report, f"{job.output}: cannot write ({exc.strerror or exc}); check the folder's permissions and space")
    else:
        report.written.append(Path(job.output))


def _fail(report: BatchReport, line: str) -> None:
    report.errors.append(line)
    tqdm_warn(f"error: {line}")  # keeps the progress bar intact
