"""Batch jobs on Ray Data over many machines (issue 30; ``flipnet-rt cluster``; the ``cluster`` extra).

The driver plans the job (:func:`~.exactly_once.plan_work`: outputs that exist are skipped), then
:func:`run_on_ray` streams the work items through an actor pool:

    ray.data.from_items(items).map_batches(_Actor, compute=ActorPoolStrategy(size=N),
                                           num_cpus=C, num_gpus=G, batch_size=B)

Each actor builds its runner once (``make_runner``: a ``Restorer`` and what wraps it, loaded once;
Ray's ``num_gpus`` hands it its GPU through ``CUDA_VISIBLE_DEVICES``) and gets ``B`` items per call
(one per call for videos). A runner writes each output itself, atomically, and reports one
:class:`Outcome` per item; a bad input is an outcome, not an exception, so the job goes on.

Faults: an actor that dies (killed, its node lost, Ray's out-of-memory killer) is restarted up to
``retries`` times and its unfinished calls are run again (Ray's ``max_restarts`` and
``max_task_retries``); outputs that the dead actor had already written are found and skipped,
so nothing is written twice. In-process errors (an out-of-memory exception of the engine) are
the runner's to retry. Past the bounds the run stops, the records say so and running the job
again finishes it.

Ray is imported only inside :func:`run_on_ray`: ``import flipnet_rt.jobs.cluster`` costs nothing.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from .exactly_once import ActorStats, Summary, WorkItem, one_line

log = logging.getLogger(__name__)

#: ``address`` values besides ``ray://HOST:PORT`` and ``HOST:PORT``.
ADDRESSES = ("local", "auto")


@dataclass(frozen=True)
class Outcome:
    """What became of one item: ``status`` ``written``, ``skipped`` (its output was found already
    written: a retried call) or ``failed`` (``reason``: one line)."""

    key: str
    source: str
    status: str
    reason: str = ""


class ItemRunner(Protocol):
    """What an actor runs: made once per actor, then called with batches of items."""

    def run(self, items: list[WorkItem]) -> list[Outcome]:
        """One outcome per item, in order; writes the outputs."""
        ...


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how wide a job runs.

    address: ``local`` (a Ray instance of this machine, started for the job), ``auto`` (the
        cluster that ``ray start`` joined this machine to) or ``ray://HOST:PORT`` (Ray Client).
    actors: actors in the pool (one model each). gpus_per_actor, cpus_per_actor: each actor's
        Ray resources (``num_gpus``, ``num_cpus``; fractions share a device). batch_size: items
        per actor call. retries: restarts of a lost actor and re-runs of its calls, each.
    """

    address: str = "local"
    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    batch_size: int = 1
    retries: int = 3

    def __post_init__(self) -> None:
        # errors name the field; the command line shows its flag (cli/flags.py's usage_message)
        if self.address not in ADDRESSES and ":" not in self.address:
            raise ValueError(f"address: {self.address!r}; use local, auto or ray://HOST:PORT")
        if self.actors < 1:
            raise ValueError(f"actors: {self.actors}; must be 1 or more")
        if not self.gpus_per_actor >= 0 or not self.cpus_per_actor > 0:
            raise ValueError(
                f"gpus_per_actor: {self.gpus_per_actor}, cpus_per_actor: {self.cpus_per_actor}; "
                "GPUs must be 0 or more, CPUs more than 0"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size: {self.batch_size}; must be 1 or more")
        if self.retries < 0:
            raise ValueError(f"retries: {self.retries}; must be 0 or more")


class _Actor:
    """The Ray Data callable class: one per actor; ``make_runner`` runs once, in the actor."""

    def __init__(self, make_runner: Callable[[], ItemRunner]) -> None:
        self.runner = make_runner()
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [
            WorkItem(str(s), str(o), str(k), int(v))
            for s, o, k, v in zip(batch["source"], batch["output"], batch["key"], batch["variant"])
        ]
        began = time.perf_counter()
        outcomes = self.runner.run(items)
        busy = (time.perf_counter() - began) / max(1, len(items))
        return {
            "key": np.array([o.key for o in outcomes], dtype=object),
            "source": np.array([o.source for o in outcomes], dtype=object),
            "status": np.array([o.status for o in outcomes], dtype=object),
            "reason": np.array([o.reason for o in outcomes], dtype=object),
            "actor": np.array([self.name] * len(outcomes), dtype=object),
            "busy_s": np.full(len(outcomes), busy),
        }


def connect(address: str, *, verbose: bool = False) -> bool:
    """Join (``auto``, ``ray://...``) or start (``local``) Ray unless this process already has;
    True when this call did (the caller then shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(
        address=address,
        include_dashboard=False if address == "local" else None,
        log_to_driver=verbose,
        logging_level=logging.INFO if verbose else logging.WARNING,
    )
    return True


def check_resources(options: ClusterOptions) -> None:
    """Raise ValueError (naming the field) unless the connected cluster has the CPUs and GPUs of one
    actor: Ray would otherwise wait for them for ever. (An autoscaling cluster must have one such
    node up.) Fewer than ``actors`` fitting is fine: the pool starts those that fit."""
    import ray

    total = ray.cluster_resources()
    for field, kind, need in (
        ("gpus_per_actor", "GPU", options.gpus_per_actor),
        ("cpus_per_actor", "CPU", options.cpus_per_actor),
    ):
        if need > total.get(kind, 0.0):
            raise ValueError(
                f"{field}: {need:g}; the cluster has {total.get(kind, 0.0):g} {kind}s in all, not enough for "
                f"one actor (ask for fewer, or add nodes with `ray start --address HEAD:PORT`)"
            )


def run_on_ray(
    items: list[WorkItem],
    make_runner: Callable[[], ItemRunner],
    options: ClusterOptions,
    summary: Summary,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> None:
    """Run ``items`` on the connected Ray cluster (:func:`connect`), updating ``summary`` as each
    outcome arrives (and calling ``on_outcome``). A failure of the run itself (an actor lost more
    than ``retries`` times, the cluster gone) sets ``summary.stopped`` instead of raising."""
    import ray.data
    from ray.data import ActorPoolStrategy, DataContext

    if not items:
        return
    context = DataContext.get_current()
    context.enable_progress_bars = False  # the caller shows one bar over the whole job
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    blocks = max(1, math.ceil(len(items) / options.batch_size))
    dataset = ray.data.from_items([asdict(item) for item in items], override_num_blocks=blocks)
    # Ray Data's defaults retry forever; bounded here. Ray 2.60 has no named parameter for them (its
    # actor pool reads them from the remote args, which it marks deprecated): silence that warning.
    remote: dict[str, Any] = {"max_restarts": options.retries, "max_task_retries": options.retries}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        results = dataset.map_batches(
            _Actor,
            fn_constructor_args=(make_runner,),
            batch_size=options.batch_size,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=min(options.actors, blocks)),  # no idle actor loads a model
            num_cpus=options.cpus_per_actor,
            num_gpus=options.gpus_per_actor or None,
            **remote,
        )
    try:
        for row in results.iter_rows():
            outcome = Outcome(str(row["key"]), str(row["source"]), str(row["status"]), str(row["reason"]))
            _count(summary, outcome, str(row["actor"]), float(row["busy_s"]))
            if on_outcome is not None:
                on_outcome(outcome)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 -- any failure of the run is recorded; the job is resumable
        summary.stopped = re.split(r"(?<=\.)\s| Traceback", one_line(exc), maxsplit=1)[0][:300]  # its first sentence
        log.debug("the run stopped", exc_info=True)


def _count(summary: Summary, outcome: Outcome, actor: str, busy_s: float) -> None:
    stats = summary.actors.setdefault(actor, ActorStats())
    stats.busy_s += busy_s
    if outcome.status == "written":
        summary.written += 1
        stats.images += 1
    elif outcome.status == "skipped":
        summary.skipped += 1
    else:
        summary.failed.append((outcome.source, outcome.reason))
