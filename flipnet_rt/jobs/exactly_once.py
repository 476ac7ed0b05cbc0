"""Exactly-once batch jobs over local paths and URLs (issue 30; Ray-free, used by ``flipnet-rt cluster``).

Every input's output is fixed by its path relative to the output folder (its **key**, the same as
:func:`~flipnet_rt.jobs.batchio.plan_jobs` gives ``restore``, so seeds and files agree), written
under a temporary name and renamed (one whole-object write on an object store), never half there:

* :func:`plan_work` expands the inputs (files, folders, list files: ``*.txt``, one path or URL per
  line), lists the output folder once, **skips** every item whose output exists (unless
  ``overwrite``) and removes the temporary files a killed run left behind. Running a job again
  therefore finishes it: nothing is redone, nothing written twice. One job per output folder at a
  time (a second job's temporary files would be taken for leftovers).
* :class:`Store` writes one output atomically; :func:`fetch` reads one input (a URL through a local
  copy); errors name the input as given.
* :func:`write_records` writes ``OUT/_errors.jsonl`` (one ``{"path", "reason"}`` per line) and
  ``OUT/_summary.json``.

Paths with ``://`` are URLs, opened with fsspec (``s3://``, ``gs://``, ``file://``...; installed with
the ``cluster`` extra); others are local or shared-filesystem paths.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..imaging.io import ImageError, format_path, load_image, save_image
from .batchio import IMAGE_SUFFIXES, _normalise_suffix, _output_names, plan_jobs

log = logging.getLogger(__name__)

#: What a job writes into its output folder besides the outputs.
ERRORS_FILE = "_errors.jsonl"
SUMMARY_FILE = "_summary.json"
#: An input argument with one of these suffixes is a list of inputs, one path or URL per line.
LIST_SUFFIXES = frozenset({".txt"})
#: Video files taken from folders by ``cluster video``.
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v"})
#: Temporary names: ``save_image``'s ``.NAME.HEX8.tmp``, the video sink's ``.STEM.partial-HEX8.EXT``
#: (flipnet_rt/imaging/io.py, flipnet_rt/video/sink.py) and this module's uploads (``.tmp`` too).
TEMP_NAME = re.compile(r"^\..+\.(?:[0-9a-f]{8}\.tmp|partial-[0-9a-f]{8}(?:\.[^.]*)?)$")
#: Object stores whose single write of a whole object is atomic (no temporary name needed).
_ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


def is_url(path: str) -> bool:
    """Whether ``path`` names a URL (``scheme://...``) rather than a local or shared-filesystem path."""
    return "://" in path


@dataclass(frozen=True)
class WorkItem:
    """One output to make.

    source: the input, a local path or URL, as given. output: the output, inside the output folder.
    key: the output's path relative to the output folder, POSIX separators; the seed derives from it
    and ``variant`` (:func:`~flipnet_rt.config.options.key_seed`).
    """

    source: str
    output: str
    key: str
    variant: int = 0


@dataclass
class Plan:
    """What a run has to do: ``todo`` (outputs missing), ``skipped`` (outputs already there),
    ``errors`` (``(path, reason)`` found while planning) and how many leftover temporary files
    were removed."""

    todo: list[WorkItem] = field(default_factory=list)
    skipped: list[WorkItem] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    removed_temps: int = 0


def plan_work(
    inputs: Sequence[str],
    out: str,
    *,
    suffix: str | None = ".png",
    variants: int = 1,
    take: frozenset[str] = IMAGE_SUFFIXES,
    overwrite: bool = False,
) -> Plan:
    """Plan a job: every input's outputs (as :func:`~flipnet_rt.jobs.batchio.plan_jobs` maps them),
    minus those already in ``out`` (all of them redone with ``overwrite``).

    Args:
        inputs: files, folders and list files (``*.txt``), local paths or URLs.
        out: the output folder, a local path or URL.
        suffix: the outputs' suffix (None: each input's own, for videos).
        variants: outputs per input (``_v{k}`` names).
        take: suffixes taken from folders.
        overwrite: redo outputs that exist.
    """
    plan = Plan()
    entries = _expand_lists(inputs, plan.errors)
    local = [e for e in entries if not is_url(e)]
    remote = [e for e in entries if is_url(e)]
    items: list[WorkItem] = []
    claimed: dict[str, str] = {}
    if local:
        root = Path(out) if not is_url(out) else Path(tempfile.gettempdir(), f"flipnet-virtual-{secrets.token_hex(8)}")
        jobs, errors = plan_jobs(local, root, suffix=suffix, variants=variants, take=take)
        plan.errors += [_split_error(line) for line in errors]
        for job in jobs:
            claimed[job.key] = str(job.source)
            source = str(job.source.absolute())  # actors may run in another folder
            items.append(WorkItem(source, _join(out, job.key), job.key, job.variant))
    for entry in remote:
        for source, relative in _remote_sources(entry, take, plan.errors):
            names = _output_names(relative, _normalise_suffix(suffix) if suffix else None, variants)
            keys = [name.as_posix() for name in names]
            first = next((claimed[k] for k in keys if k in claimed), None)
            if first is not None:
                plan.errors.append((source, f"its output {keys[0]} is also the output of {first}; rename one"))
                continue
            for variant, key in enumerate(keys):
                claimed[key] = source
                items.append(WorkItem(source, _join(out, key), key, variant if variants > 1 else 0))
    items.sort(key=lambda item: (PurePosixPath(item.key).parts, item.variant))
    existing, temps = _existing(out)
    plan.removed_temps = _remove(out, temps)
    for item in items:
        (plan.skipped if item.key in existing and not overwrite else plan.todo).append(item)
    return plan


def _join(out: str, key: str) -> str:
    return out.rstrip("/") + "/" + key if is_url(out) else str(Path(out, key))


def _split_error(line: str) -> tuple[str, str]:
    """``"PATH: reason"`` (batchio's one-line errors) as ``(PATH, reason)``."""
    path, _, reason = line.partition(": ")
    return path, reason


def _expand_lists(inputs: Sequence[str], errors: list[tuple[str, str]]) -> list[str]:
    """The inputs with every list file replaced by its lines (blank lines and ``#`` comments
    skipped; relative paths are relative to the current folder, as on the command line)."""
    entries: list[str] = []
    for raw in inputs:
        text = os.fspath(raw)
        if PurePosixPath(text).suffix.lower() not in LIST_SUFFIXES:
            entries.append(text)
            continue
        try:
            lines = _read_bytes(text).decode("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            errors.append((text, f"cannot read the list file ({exc}); check the path"))
            continue
        entries += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return entries


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        from fsspec.core import url_to_fs
    except ImportError:  # pragma: no cover - installed with the cluster extra
        raise ValueError(f"{url}: URLs need fsspec: pip install 'flipnet-rt[cluster]'") from None
    return url_to_fs(url)


def _protocol(fs: Any) -> str:
    protocol = fs.protocol
    return protocol[0] if isinstance(protocol, (tuple, list)) else str(protocol)


def _remote_sources(
    url: str, take: frozenset[str], errors: list[tuple[str, str]]
) -> Iterator[tuple[str, PurePosixPath]]:
    """``(URL, output path before the new suffix)`` of a file URL or of every file under a folder URL
    (sorted; hidden entries skipped), as :func:`~flipnet_rt.jobs.batchio.plan_jobs` maps local ones."""
    try:
        fs, root = _filesystem(url)
        if not fs.exists(root):
            errors.append((url, "input not found; check the path"))
            return
        if not fs.isdir(root):
            yield url, PurePosixPath(PurePosixPath(root).name)
            return
        found = sorted(fs.find(root))
    except (OSError, ValueError) as exc:
        errors.append((url, f"cannot list ({exc})"))
        return
    base = url.rstrip("/")
    top = root.rstrip("/")
    for path in found:
        relative = PurePosixPath(path[len(top) :].lstrip("/"))
        if any(part.startswith(".") for part in relative.parts) or relative.suffix.lower() not in take:
            continue
        yield f"{base}/{relative.as_posix()}", relative


def _existing(out: str) -> tuple[set[str], list[str]]:
    """The keys of the files in ``out`` and its temporary files (keys), listed once."""
    keys: set[str] = set()
    temps: list[str] = []
    if is_url(out):
        fs, root = _filesystem(out)
        files = [p[len(root.rstrip("/")) :].lstrip("/") for p in fs.find(root)] if fs.exists(root) else []
    else:
        top = Path(out)
        files = [Path(folder, name).relative_to(top).as_posix() for folder, _, names in os.walk(top) for name in names]
    for key in files:
        if TEMP_NAME.match(PurePosixPath(key).name):
            temps.append(key)
        else:
            keys.add(key)
    return keys, temps


def _remove(out: str, temps: list[str]) -> int:
    for key in temps:
        log.info("%s: a temporary file left by an interrupted run; removed", key)
        if is_url(out):
            fs, root = _filesystem(out)
            fs.rm_file(root.rstrip("/") + "/" + key)
        else:
            Path(out, key).unlink(missing_ok=True)
    return len(temps)


def _read_bytes(path: str) -> bytes:
    if is_url(path):
        fs, where = _filesystem(path)
        return bytes(fs.cat_file(where))
    return Path(path).read_bytes()


# --------------------------------------------------------------------------- reading and writing


@contextlib.contextmanager
def fetch(source: str) -> Iterator[Path]:
    """A local path to read ``source`` from: the path itself, or a temporary copy of a URL
    (deleted on exit). Raises OSError (a URL that cannot be read)."""
    if not is_url(source):
        yield Path(source)
        return
    fs, where = _filesystem(source)
    with tempfile.TemporaryDirectory(prefix="flipnet-in-") as scratch:
        local = Path(scratch, PurePosixPath(where).name)
        fs.get_file(where, str(local))
        yield local


def read_image(source: str) -> np.ndarray:
    """Load the image ``source`` (path or URL); :class:`ImageError` names ``source``."""
    try:
        with fetch(source) as local:
            try:
                return load_image(local)
            except ImageError as exc:
                if local == Path(source):
                    raise
                raise ImageError(source, exc.reason) from None
    except OSError as exc:
        raise ImageError(source, f"cannot read ({exc})") from None


class Store:
    """The output folder ``root`` (path or URL): what exists, and atomic writes by key."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.url = is_url(root)
        self._fs: Any = None
        if self.url:
            self._fs, self._base = _filesystem(root)
            self._base = self._base.rstrip("/")

    def path(self, key: str) -> str:
        """Where the output ``key`` goes (as given to the job)."""
        return _join(self.root, key)

    def exists(self, key: str) -> bool:
        if self.url:
            return bool(self._fs.exists(f"{self._base}/{key}"))
        return Path(self.root, key).is_file()

    def write_image(self, key: str, image: np.ndarray) -> None:
        """Write ``uint8 [H, W, 3]`` as ``key`` atomically (format from the suffix). OSError on failure."""
        with self.staged(key) as local:  # save_image itself renames atomically into a local destination
            save_image(image, local)

    @contextlib.contextmanager
    def staged(self, key: str) -> Iterator[Path]:
        """A local path to make the output ``key`` at, published when the block ends without error.
        Local outputs: the destination itself (the writer renames atomically, as the video sink does);
        URLs: a temporary local file, then :meth:`publish`."""
        if not self.url:
            destination = Path(self.root, key)
            destination.parent.mkdir(parents=True, exist_ok=True)
            yield destination
            return
        with tempfile.TemporaryDirectory(prefix="flipnet-out-") as scratch:
            local = Path(scratch, PurePosixPath(key).name)
            yield local
            self.publish(local, key)

    def publish(self, local: Path, key: str) -> None:
        """Copy the finished local file ``local`` to ``key``: one whole-object write on an object store,
        else a temporary name then a rename."""
        if not self.url:
            destination = Path(self.root, key)
            destination.parent.mkdir(parents=True, exist_ok=True)
            tmp = destination.with_name(f".{destination.name}.{secrets.token_hex(4)}.tmp")
            shutil.copyfile(local, tmp)
            os.replace(tmp, destination)
            return
        target = f"{self._base}/{key}"
        if _protocol(self._fs) in _ATOMIC_PUT:
            self._fs.put_file(str(local), target)
            return
        parent, _, name = target.rpartition("/")
        staging = f"{parent}/.{name}.{secrets.token_hex(4)}.tmp"
        self._fs.makedirs(parent, exist_ok=True)
        self._fs.put_file(str(local), staging)
        try:
            self._fs.mv(staging, target)
        except BaseException:
            with contextlib.suppress(OSError):
                self._fs.rm_file(staging)
            raise

    def write_text(self, name: str, text: str) -> None:
        """A small text file (the job's records) written atomically."""
        with tempfile.TemporaryDirectory(prefix="flipnet-out-") as scratch:
            local = Path(scratch, name)
            local.write_text(text, encoding="utf-8")
            self.publish(local, name)


# --------------------------------------------------------------------------- the job's records


@dataclass
class ActorStats:
    """One actor's share: outputs written and the seconds it spent on its batches."""

    images: int = 0
    busy_s: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.busy_s if self.busy_s > 0 else 0.0


@dataclass
class Summary:
    """What one run did (``OUT/_summary.json``): counts, throughput, per-actor throughput, failures."""

    planned: int = 0
    written: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    actors: dict[str, ActorStats] = field(default_factory=dict)
    stopped: str = ""  # why the run stopped early ("" when it ran to the end)

    @property
    def complete(self) -> bool:
        """Whether every planned output exists now."""
        return not self.stopped and self.written + self.skipped == self.planned

    @property
    def images_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def line(self, command: str) -> str:
        """The one-line summary printed at the end."""
        text = (
            f"{command}: wrote {self.written}, skipped {self.skipped} (already written), "
            f"failed {len(self.failed)} of {self.planned} in {self.seconds:.1f} s "
            f"({self.images_per_s:.2f}/s, {len(self.actors)} actor(s))"
        )
        if self.stopped:
            text += f"; stopped: {self.stopped}; run the same command again to finish"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "planned": self.planned,
            "written": self.written,
            "skipped": self.skipped,
            "failed": len(self.failed),
            "seconds": round(self.seconds, 3),
            "per_second": round(self.images_per_s, 4),
            "actors": {
                name: {**asdict(stats), "per_second": round(stats.images_per_s, 4)}
                for name, stats in sorted(self.actors.items())
            },
            "failures": [{"path": path, "reason": reason} for path, reason in self.failed],
            "stopped": self.stopped or None,
        }


def write_records(store: Store, summary: Summary) -> None:
    """``_errors.jsonl`` (this run's failures, one JSON object a line) and ``_summary.json``."""
    lines = "".join(json.dumps({"path": p, "reason": r}, ensure_ascii=False) + "\n" for p, r in summary.failed)
    store.write_text(ERRORS_FILE, lines)
    store.write_text(SUMMARY_FILE, json.dumps(summary.to_dict(), indent=2) + "\n")


def one_line(exc: BaseException) -> str:
    """An exception as one line (its type when it has no message)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def describe(path: str) -> str:
    """A path or URL as printed in messages."""
    return path if is_url(path) else format_path(path)
