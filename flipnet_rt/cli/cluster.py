"""``flipnet-rt cluster restore|degrade|video INPUT... -o OUT``: batch jobs on Ray over many machines.

The same sampling, face, backend (and video) options as the single-machine commands, plus where
and how wide to run (:class:`~flipnet_rt.jobs.cluster.ClusterOptions`). Inputs are files, folders
and list files (``*.txt``: one path or URL per line); paths may be URLs (``s3://``, ``gs://``) where
fsspec has the filesystem. Exactly once: each output is named by its input's relative path, written
atomically, and skipped when it exists, so running a job again finishes it (``--overwrite`` redoes
everything). Seeds derive from ``--seed`` and the output's relative path, so ``cluster restore``
writes the bytes ``restore`` writes. Failures go to ``OUT/_errors.jsonl``; ``OUT/_summary.json``
has the counts and throughput. Exit status: 0 every output written, 1 any input failed or the run
stopped (run it again), 2 a usage error, 130 Ctrl-C. See docs/cluster.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..jobs.exactly_once import WorkItem, describe, is_url, one_line
from .jobs import sampling_overrides

COMMANDS = ("restore", "degrade", "video")


def add_parser(sub: argparse._SubParsersAction, run_args: Callable[[argparse.ArgumentParser], None]) -> None:
    from .faces import aligned_arg, face_args
    from .jobs import variants_arg
    from .video import video_args

    cluster = sub.add_parser(
        "cluster", help="restore, degrade or video over many machines on Ray: exactly once, resumable"
    )
    kinds = cluster.add_subparsers(dest="cluster_command", required=True, metavar="{restore,degrade,video}")
    restore = kinds.add_parser("restore", help="restore on a Ray cluster: restore's options, the bytes restore writes")
    _job_args(restore, run_args, "images")
    aligned_arg(restore.add_argument_group("whole images"))
    face_args(restore)
    degrade = kinds.add_parser("degrade", help="degrade on a Ray cluster: degrade's options, the bytes degrade writes")
    _job_args(degrade, run_args, "images")
    variants_arg(degrade)
    video = kinds.add_parser(
        "video", help="video on a Ray cluster, one actor call per video: video's options; OUT is a folder"
    )
    _job_args(video, run_args, "videos")
    video_args(video)
    video.set_defaults(variants=1)
    restore.set_defaults(variants=1)
    for parser in (restore, degrade):
        parser.set_defaults(save_faces=None, report=None)


def _job_args(parser: argparse.ArgumentParser, run_args: Callable[[argparse.ArgumentParser], None], what: str) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help=f"{what}, folders (walked recursively) or list files (*.txt, one path or URL per line); "
        "local or shared-filesystem paths, or URLs (s3://, gs://, file://) read with fsspec",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output folder (path or URL); each output is OUT/<the input's relative path>",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo outputs that exist (default: skip them, so a rerun resumes)"
    )
    c = parser.add_argument_group("cluster (Ray)")
    c.add_argument(
        "--address",
        default="local",
        metavar="local|auto|ray://HOST:PORT",
        help="local: start a Ray instance on this machine (default); auto: the cluster this machine "
        "joined with `ray start`; ray://HOST:PORT: a remote cluster's Ray Client server",
    )
    c.add_argument("--actors", type=int, default=1, metavar="N", help="actors, each with its own model (default 1)")
    c.add_argument(
        "--gpus-per-actor",
        type=float,
        default=0.0,
        metavar="G",
        help="GPUs Ray gives each actor (0: none, the default; 0.5: two actors share one GPU)",
    )
    c.add_argument(
        "--cpus-per-actor",
        type=float,
        default=1.0,
        metavar="C",
        help="CPUs Ray reserves for each actor (default 1); on the CPU also its ONNX Runtime threads",
    )
    c.add_argument(
        "--retries",
        type=int,
        default=3,
        metavar="R",
        help="restarts of a lost actor (killed, out of memory, node lost) and re-runs of its "
        "unfinished calls (default 3); past them the run stops and a rerun resumes",
    )
    run_args(parser)


def run(args: argparse.Namespace) -> int:
    from ..jobs.cluster import ClusterOptions
    from .flags import usage_message

    command = args.cluster_command
    if not args.model:
        print("error: no model: pass --model DIR or --model random:tiny, or set $FLIPNET_MODEL", file=sys.stderr)
        return 2
    try:
        video = command == "video"
        options = ClusterOptions(
            address=args.address,
            actors=args.actors,
            gpus_per_actor=args.gpus_per_actor,
            cpus_per_actor=args.cpus_per_actor,
            batch_size=1 if video else args.batch_size,  # video: one video per call; --batch-size: faces
            retries=args.retries,
        )
        if args.variants < 1:
            raise ValueError(f"variants: {args.variants}; must be 1 or more")
        if video:
            _video_options(args)
        _check_sampling(args)
    except ValueError as exc:
        fields = [f.name for f in dataclasses.fields(ClusterOptions)] + ["variants", *sampling_overrides(args)]
        print(f"error: {usage_message(exc, fields)}", file=sys.stderr)
        return 2
    try:
        import ray  # noqa: F401
    except ImportError:
        print("error: cluster needs Ray: pip install 'flipnet-rt[cluster]'", file=sys.stderr)
        return 2
    _absolute_paths(args)
    return _run(args, options)


def _check_sampling(args: argparse.Namespace) -> None:
    """The sampling flags checked against ``--model``'s flipnet.json here, so that a usage error is
    one line and exit 2 before any actor starts (``random:`` models are checked in the actors).
    Raises ValueError naming the field (or the model's file)."""
    from ..config.model import FlipnetConfig
    from ..config.options import SamplingOptions

    if args.model.startswith("random:"):
        return
    try:
        config = FlipnetConfig.load(Path(args.model))
    except ValueError as exc:
        raise ValueError(f"--model {args.model}: {exc}") from None
    SamplingOptions.from_config(config, **sampling_overrides(args))


def _absolute_paths(args: argparse.Namespace) -> None:
    """Local paths made absolute: actors may run in another folder (or on another machine, with the
    same shared filesystem mounted at the same place)."""
    args.output = args.output if is_url(args.output) else os.path.abspath(args.output)
    if not args.model.startswith("random:") and Path(args.model).exists():
        args.model = os.path.abspath(args.model)


def _run(args: argparse.Namespace, options: Any) -> int:
    from tqdm import tqdm

    from ..jobs.batchio import IMAGE_SUFFIXES
    from ..jobs.cluster import ClusterOptions, Outcome, check_resources, connect, run_on_ray
    from ..jobs.exactly_once import VIDEO_SUFFIXES, Store, Summary, plan_work, write_records
    from .flags import usage_message

    command = f"cluster {args.cluster_command}"
    video = args.cluster_command == "video"
    began = time.perf_counter()
    try:
        plan = plan_work(
            args.inputs,
            args.output,
            suffix=None if video else ".png",
            variants=args.variants,
            take=VIDEO_SUFFIXES if video else IMAGE_SUFFIXES,
            overwrite=args.overwrite,
        )
    except ImportError as exc:  # fsspec's filesystem for a URL's scheme is not installed (s3fs, gcsfs)
        print(f"error: {one_line(exc)} (on every machine of the cluster)", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # the output folder cannot be listed (a URL: credentials, bucket)
        print(f"error: -o {args.output}: cannot list it ({one_line(exc)})", file=sys.stderr)
        return 2
    summary = Summary(planned=len(plan.todo) + len(plan.skipped) + len(plan.errors), skipped=len(plan.skipped))
    summary.failed += plan.errors
    for path, reason in plan.errors:
        print(f"error: {describe(path)}: {reason}", file=sys.stderr)
    if plan.removed_temps:
        print(f"{command}: removed {plan.removed_temps} temporary file(s) of an interrupted run", file=sys.stderr)
    if not plan.todo and not plan.skipped:
        print(f"error: no input {'videos' if video else 'images'} to process", file=sys.stderr)
        return 1
    store = Store(args.output)
    factory = functools.partial(VideoRunner if video else ImageRunner, args)
    status = 0
    started = False
    bar = tqdm(total=len(plan.todo), desc=command, unit="video" if video else "img", disable=None, file=sys.stderr)

    def shown(outcome: Outcome) -> None:
        if outcome.status == "failed":
            tqdm.write(f"error: {describe(outcome.source)}: {outcome.reason}", file=sys.stderr)
        bar.update(1)

    try:
        if plan.todo:
            started = connect(args.address, verbose=args.verbose)
            check_resources(options)
            run_on_ray(plan.todo, factory, options, summary, shown)
    except KeyboardInterrupt:
        summary.stopped = "interrupted"
        status = 130
    except (ConnectionError, RuntimeError, ValueError) as exc:  # no cluster at --address, too few GPUs
        summary.stopped = usage_message(exc, [f.name for f in dataclasses.fields(ClusterOptions)])
        print(f"error: {summary.stopped}", file=sys.stderr)
        status = 2
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - began
        if started:
            import ray

            ray.shutdown()
        try:
            write_records(store, summary)
        except OSError as exc:
            print(f"error: {args.output}: cannot write the job's records ({exc})", file=sys.stderr)
    if status != 2:
        print(summary.line(command), file=sys.stderr)
    return status or (0 if summary.complete and not summary.failed else 1)


def _video_options(args: argparse.Namespace) -> tuple[Any, Any]:
    from ..video.encoding import EncoderOptions
    from ..video.pipeline import VideoOptions
    from .video import video_options

    return video_options(args, EncoderOptions, VideoOptions)


# --------------------------------------------------------------------------- in the actors


def _threads(args: argparse.Namespace) -> int | None:
    """ONNX Runtime CPU threads of an actor: its CPUs (none given on a GPU actor)."""
    return max(1, int(args.cpus_per_actor)) if not args.gpus_per_actor else None


class ImageRunner:
    """An actor's ``restore``/``degrade``: the single-machine command's restorer and runner
    (:mod:`flipnet_rt.cli.jobs`), loaded once; each batch loaded, run with each item's key seed,
    written atomically. A batch that fails in the engine (out of memory) is run again one item
    at a time; an item that fails alone is an outcome, not an exception."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ..jobs.exactly_once import Store
        from .jobs import _runner, load_restorer

        args = argparse.Namespace(**{**vars(args), "command": args.cluster_command})
        self.args = args
        self.store = Store(args.output)
        restorer, self.options = load_restorer(args, threads=_threads(args))
        self.runner = _runner(args, restorer, self.options)

    def run(self, items: list[WorkItem]) -> list[Any]:
        from ..config.options import key_seed
        from ..imaging.io import ImageError
        from ..jobs.batchio import Job
        from ..jobs.cluster import Outcome
        from ..jobs.exactly_once import read_image

        outcomes: dict[str, Outcome] = {}
        loaded = []
        for item in items:
            if not self.args.overwrite and self.store.exists(item.key):
                outcomes[item.key] = Outcome(item.key, item.source, "skipped")
                continue
            try:
                loaded.append((item, read_image(item.source)))
            except ImageError as exc:
                outcomes[item.key] = Outcome(item.key, item.source, "failed", exc.reason)
        groups = [loaded]
        while groups:
            group = groups.pop()
            if not group:
                continue
            seeds = [key_seed(self.options.seed, item.key, item.variant) for item, _ in group]
            try:
                results = self.runner([image for _, image in group], seeds)
            except (RuntimeError, ValueError, MemoryError) as exc:  # e.g. out of memory: again, one by one
                if len(group) > 1:
                    groups += [[one] for one in group]
                else:
                    item = group[0][0]
                    outcomes[item.key] = Outcome(item.key, item.source, "failed", f"inference failed ({one_line(exc)})")
                continue
            for (item, image), seed, result in zip(group, seeds, results):
                job = Job(Path(item.source), Path(item.output), 0, item.key, item.variant)
                try:
                    self.store.write_image(item.key, self.runner.finish(job, image, seed, result))
                except OSError as exc:
                    outcomes[item.key] = Outcome(item.key, item.source, "failed", f"cannot write ({one_line(exc)})")
                else:
                    outcomes[item.key] = Outcome(item.key, item.source, "written")
        return [outcomes[item.key] for item in items]


class VideoRunner:
    """An actor's ``video``: the single-machine command's engine workers, built once; one video per
    call, transcoded through the atomic video sink (a URL: made locally, then uploaded)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ..jobs.exactly_once import Store
        from .jobs import load_restorer
        from .video import _workers

        args = argparse.Namespace(**{**vars(args), "command": "video"})
        self.args = args
        self.store = Store(args.output)
        self.encoder, self.options = _video_options(args)
        self.workers = _workers(args, *load_restorer(args, threads=_threads(args)))

    def run(self, items: list[WorkItem]) -> list[Any]:
        from ..jobs.cluster import Outcome
        from ..jobs.exactly_once import fetch
        from ..video.errors import VideoError
        from ..video.pipeline import VideoRestorer
        from ..video.transcode import transcode

        outcomes = []
        for item in items:
            if not self.args.overwrite and self.store.exists(item.key):
                outcomes.append(Outcome(item.key, item.source, "skipped"))
                continue
            video = VideoRestorer(self.workers, self.options)
            try:
                with fetch(item.source) as source, self.store.staged(item.key) as destination:
                    transcode(
                        source,
                        destination,
                        video,
                        encoder=self.encoder,
                        start=self.args.start,
                        duration=self.args.duration,
                        queue_depth=self.args.queue_depth,
                        progress=False,
                        prepare=video.detect_ahead if self.args.detect_thread else None,
                    )
            except (VideoError, OSError, RuntimeError, ValueError) as exc:
                outcomes.append(Outcome(item.key, item.source, "failed", one_line(exc)))
            else:
                outcomes.append(Outcome(item.key, item.source, "written"))
        return outcomes
