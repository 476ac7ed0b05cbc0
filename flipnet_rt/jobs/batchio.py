"""Batch job planning for ``flipnet-rt restore|degrade INPUT... -o OUTDIR``.

:func:`plan_jobs` turns the command line's inputs into a sorted list of
:class:`Job` (one source image -> one output file) plus one-line error strings
for problems found while planning, so one bad input never stops the batch:

* A folder input is walked recursively in sorted order. Hidden files and folders
  (name starting with ``.``) and symlinked folders are skipped, as is OUTDIR when
  it lies inside the folder. Files with a suffix in :data:`IMAGE_SUFFIXES` are
  taken; each goes to ``OUTDIR/<path relative to the folder, new suffix>``.
* A file input is taken whatever its suffix (a non-image fails later, when it is
  loaded) and goes to ``OUTDIR/<name, new suffix>``.
* With ``variants=K > 1`` each source gives K jobs, written to ``<stem>_v0`` ..
  ``<stem>_v{K-1}``.
* The same file reached twice (given twice, through a folder and directly, or
  through a link) is restored once, at its first mapping in argument order.
* Inputs are never overwritten: a source whose output would land on any input
  file of the batch is refused. Two sources mapping to the same output: the
  second is refused, naming the first.

Jobs are sorted by their path under OUTDIR before the new suffix (then variant)
and numbered by ``Job.index``. Each job's ``key`` is its output's path under OUTDIR
(POSIX separators); the caller derives its seed from ``(seed, key, variant)``
(:func:`flipnet_rt.config.options.key_seed`), so a result depends neither on batch
size nor on the other files of the job nor on the machine that ran it.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from flipnet_rt.imaging.io import SAVE_FORMATS, format_path

logger = logging.getLogger(__name__)

#: Suffixes taken from input folders (compared case-insensitively).
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Job:
    """One image to restore.

    Attributes:
        source: the input file, as found (not resolved).
        output: where the restored image goes.
        index: position in the sorted job list.
        key: the output's path relative to OUTDIR, POSIX separators (``"sub/a_v1.png"``); the
            image's seed derives from it and ``variant`` (:func:`~flipnet_rt.config.options.key_seed`).
        variant: which of the source's ``variants`` outputs this is (0 with one).
    """

    source: Path
    output: Path
    index: int
    key: str = ""
    variant: int = 0


@dataclass
class BatchReport:
    """What a batch run did: files written and one-line errors."""

    written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, else 1."""
        return 1 if self.errors else 0

    def summary(self) -> str:
        """One line, e.g. ``"wrote 12 images, 1 error"``."""
        images = "image" if len(self.written) == 1 else "images"
        errors = "error" if len(self.errors) == 1 else "errors"
        return f"wrote {len(self.written)} {images}, {len(self.errors)} {errors}"


def is_image_path(path: str | PurePath) -> bool:
    """Whether ``path`` has a suffix in :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return PurePath(path).suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class _Source:
    path: Path  # as found
    relative: PurePath  # output path under OUTDIR, before the new suffix
    key: tuple[int, int] | str  # file identity (device, inode), or resolved path


def plan_jobs(
    inputs: Sequence[str | Path],
    outdir: Path,
    *,
    suffix: str | None = ".png",
    variants: int = 1,
    take: frozenset[str] = IMAGE_SUFFIXES,
) -> tuple[list[Job], list[str]]:
    """Map input files and folders to output files.

    Args:
        inputs: files and folders, as given on the command line.
        outdir: the output folder (need not exist).
        suffix: output suffix, a key of :data:`flipnet_rt.imaging.io.SAVE_FORMATS` (``"png"`` works too);
            None keeps each source's own suffix (videos).
        variants: outputs per source; more than one adds ``_v{k}`` to the stem.
        take: the suffixes taken from folders (lower case; default :data:`IMAGE_SUFFIXES`).

    Returns:
        ``(jobs, errors)``: jobs sorted as the module docstring says and numbered 0..N-1;
        errors are one-line strings starting with the offending path.

    Raises:
        ValueError: unsupported ``suffix`` or ``variants < 1`` (caller bugs, not
            bad input files).
    """
    suffix = _normalise_suffix(suffix) if suffix is not None else None
    if variants < 1:
        raise ValueError(f"plan_jobs: variants must be >= 1, got {variants}")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        return [], [f"{format_path(outdir)}: output folder is an existing file; choose another -o folder"]

    errors: list[str] = []
    sources = _collect_sources(inputs, outdir, errors, take)
    input_keys = {source.key for source in sources}
    input_resolved = {_resolve(source.path): source.path for source in sources}

    claimed: dict[Path, Path] = {}  # resolved output -> the source that owns it
    planned: list[tuple[PurePath, int, Path, Path]] = []
    for source in sources:
        outputs = [outdir / rel for rel in _output_names(source.relative, suffix, variants)]
        problem = _output_problem(source.path, outputs, claimed, input_keys, input_resolved)
        if problem:
            errors.append(problem)
            continue
        for variant, output in enumerate(outputs):
            claimed[_resolve(output)] = source.path
            planned.append((source.relative, variant, source.path, output))

    planned.sort(key=lambda item: (item[0].parts, item[1]))
    jobs = [
        Job(source=src, output=out, index=i, key=out.relative_to(outdir).as_posix(), variant=variant)
        for i, (_, variant, src, out) in enumerate(planned)
    ]
    logger.debug("planned %d jobs, %d errors", len(jobs), len(errors))
    return jobs, errors


def batched(jobs: Iterable[Job], batch_size: int) -> Iterator[list[Job]]:
    """Yield consecutive lists of at most ``batch_size`` jobs, in order."""
    if batch_size < 1:
        raise ValueError(f"batched: batch_size must be >= 1, got {batch_size}")
    iterator = iter(jobs)
    while chunk := list(itertools.islice(iterator, batch_size)):
        yield chunk


# --------------------------------------------------------------------------- helpers


def _normalise_suffix(suffix: str) -> str:
    dotted = suffix if suffix.startswith(".") else f".{suffix}"
    if dotted.lower() not in SAVE_FORMATS:
        raise ValueError(f"plan_jobs: cannot write {suffix!r} images; use one of {', '.join(SAVE_FORMATS)}")
    return dotted


def _output_names(relative: PurePath, suffix: str | None, variants: int) -> list[PurePath]:
    if suffix is None:
        suffix = relative.suffix
    if variants == 1:
        return [relative.with_name(relative.name + suffix) if not relative.suffix else relative.with_suffix(suffix)]
    stem = relative.stem
    return [relative.with_name(f"{stem}_v{k}{suffix}") for k in range(variants)]


def _collect_sources(
    inputs: Sequence[str | Path], outdir: Path, errors: list[str], take: frozenset[str] = IMAGE_SUFFIXES
) -> list[_Source]:
    """Every source in argument order (folder contents sorted), duplicates dropped."""
    skip_dir = _resolve(outdir)
    skip_key = _identity(outdir) if outdir.is_dir() else None
    seen: dict[tuple[int, int] | str, Path] = {}
    sources: list[_Source] = []
    for raw in inputs:
        path = Path(raw)
        if not os.fspath(raw):
            errors.append("'': empty input path; pass a file or folder")
            continue
        if not path.exists():
            kind = "broken link" if path.is_symlink() else "not found"
            errors.append(f"{format_path(path)}: input {kind}; check the path")
            continue
        found: list[tuple[Path, PurePath]]  # (file, its path under OUTDIR)
        if path.is_dir():
            found = [(file, file.relative_to(path)) for file in _walk(path, skip_dir, skip_key, errors, take)]
        else:
            found = [(path, PurePath(path.name))]
        for file, relative in found:
            key = _identity(file)
            if key in seen:
                logger.debug("%s: same file as %s, restored once", format_path(file), format_path(seen[key]))
                continue
            seen[key] = file
            sources.append(_Source(file, relative, key))
    return sources


def _walk(
    top: Path,
    skip_dir: Path,
    skip_key: tuple[int, int] | str | None,
    errors: list[str],
    take: frozenset[str] = IMAGE_SUFFIXES,
) -> Iterator[Path]:
    """Image files under ``top``, sorted; skips hidden entries, symlinked folders and the
    output folder (``skip_dir`` resolved, ``skip_key`` its identity when it exists)."""

    def on_error(exc: OSError) -> None:
        where = format_path(exc.filename or top)
        errors.append(f"{where}: cannot list folder ({exc.strerror or exc}); its images are skipped")

    for folder, dirnames, filenames in os.walk(top, onerror=on_error, followlinks=False):
        kept = []
        for name in sorted(dirnames):
            child = Path(folder, name)
            if name.startswith(".") or child.is_symlink():
                continue
            if _resolve(child) == skip_dir or (skip_key is not None and _identity(child) == skip_key):
                logger.info("%s: output folder inside an input folder, not walked", format_path(child))
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            if not name.startswith(".") and PurePath(name).suffix.lower() in take:
                yield Path(folder, name)


def _output_problem(
    source: Path,
    outputs: list[Path],
    claimed: dict[Path, Path],
    input_keys: set[tuple[int, int] | str],
    input_resolved: dict[Path, Path],
) -> str | None:
    """One-line reason the source's outputs cannot be written, or ``None``."""
    for output in outputs:
        resolved = _resolve(output)
        victim = input_resolved.get(resolved)
        if victim is None and output.exists() and _identity(output) in input_keys:
            victim = output  # same file as an input through a link or mount (os.path.samefile)
        if victim is not None:
            return (
                f"{format_path(source)}: its output {format_path(output)} is the input file "
                f"{format_path(victim)}; inputs are never overwritten, choose another output folder or suffix"
            )
        if output.is_dir():
            return f"{format_path(source)}: its output {format_path(output)} is an existing folder; remove or rename it"
        first = claimed.get(resolved)
        if first is not None:
            return (
                f"{format_path(source)}: its output {format_path(output)} is also the output of "
                f"{format_path(first)}; rename one of them or restore them into different output folders"
            )
    return None


def _identity(path: Path) -> tuple[int, int] | str:
    """``(device, inode)`` of the file ``path`` points to, or its resolved path."""
    try:
        info = path.stat()
    except OSError:
        return str(_resolve(path))
    if info.st_ino == 0:  # file systems without inode numbers
        return str(_resolve(path))
    return info.st_dev, info.st_ino


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # symlink loop
        return path.absolute()
