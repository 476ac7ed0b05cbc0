"""Training datasets: HQ faces with on-the-fly LQ, real-world pairs, the off-shelf pool, mixes.

Item contract (every dataset here): a ``Sequence`` whose ``__getitem__(index)`` returns
a dict with exactly these keys:

* ``"hq"``: ``uint8 [R, R, 3]`` numpy, RGB, R = the dataset's ``resolution``;
* ``"lq"``: ``uint8 [R, R, 3]``;
* ``"caption"``: ``str``, ``""`` when the image has none;
* ``"face"``: ``bool``, True for face data (id embeddings used), False for non-face pairs;
* ``"source"``: ``str``, the HQ file's path;
* ``"degradation"``: ``dict | None``, the recorded parameters of an on-the-fly LQ
  (:meth:`DegradationParams.to_dict` plus its ``"seed"``), ``{"offshelf": path,
  "variant": k}`` for an off-shelf LQ, ``None`` for a real pair.

Determinism: an item is a pure function of (dataset seed, epoch, index). Call
``set_epoch(epoch)`` on the dataset (a :class:`MixedDataset` forwards it to its parts)
before each epoch and after a restart, and the same items come back. Random
draws use ``numpy.random.SeedSequence([seed, epoch, index, stream])``, so they do
not depend on worker processes or on the order items are read. Datasets hold
file paths only; images are decoded when an item is read.

Files: folders are walked recursively in sorted order, skipping hidden entries;
suffixes are :data:`flipnet_rt.batchio.IMAGE_SUFFIXES`. Each file's header is
checked with Pillow at construction; an unreadable one is skipped with a logged
warning and listed in ``.skipped``. A file that still fails to decode while
training (changed on disk) is replaced by the next index's file, with a warning,
so an epoch never stops on one bad image.

Torch-free: the training loop converts (``collate`` stacks a batch into arrays).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from PIL import Image

from flipnet_rt.batchio import is_image_path
from flipnet_rt.images import MAX_PIXELS, READ_FORMATS, ImageError, format_path, load_image, prepare_square
from flipnet_rt.degradations import RandomDegradation

logger = logging.getLogger(__name__)

#: LFW deep-funneled face box ``(left, top, right, bottom)`` (../shared/data/README.md).
LFW_CROP_BOX: tuple[int, int, int, int] = (50, 45, 200, 195)

# Random streams (the last SeedSequence word): per item (seed, epoch, index, stream) ...
_STREAM_LQ, _STREAM_CROP, _STREAM_OFFSHELF = 0, 1, 2
# ... and per dataset: fixed subsets (seed, 0, part, 3), per-epoch order (seed, epoch, 0, 4).
_STREAM_SUBSET, _STREAM_ORDER = 3, 4
_FALLBACK_TRIES = 8


def item_seed(seed: int, epoch: int, index: int, stream: int = _STREAM_LQ) -> int:
    """A 63-bit seed that is a pure function of its arguments (all non-negative ints)."""
    state = np.random.SeedSequence([seed, epoch, index, stream]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def _rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, index, stream]))


def _check_seed(where: str, seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{where}: seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_resolution(where: str, resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
        raise ValueError(f"{where}: resolution must be a positive integer, got {resolution!r}")
    return int(resolution)


class _EpochMixin:
    """``set_epoch``/``epoch`` shared by the datasets."""

    _epoch: int = 0

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose items ``__getitem__`` returns (exact resume: set it again)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"set_epoch: epoch must be a non-negative integer, got {epoch!r}")
        self._epoch = int(epoch)


# --------------------------------------------------------------------------- files


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``root``, recursively, sorted; hidden files and folders skipped.

    Raises:
        FileNotFoundError / NotADirectoryError: ``root`` is missing or a file.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{format_path(root)}: image folder not found; check the path")
    if not root.is_dir():
        raise NotADirectoryError(f"{format_path(root)}: not a folder; pass the folder that holds the images")
    found: list[Path] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(folder, n) for n in sorted(filenames) if not n.startswith(".") and is_image_path(n))
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def header_problem(path: Path) -> str | None:
    """Cheap validity check: ``None``, or why :func:`~flipnet_rt.images.load_image` would refuse
    the file (Pillow opens it with the formats ``load_image`` reads, checks the pixel count
    against ``MAX_PIXELS`` and runs ``verify()``, which reads headers, not pixels)."""
    Image.init()
    formats = [name for name in READ_FORMATS if name in Image.OPEN]
    try:
        with Image.open(path, formats=formats) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                return f"image too large: {width}x{height}, over {MAX_PIXELS:,} pixels"
            image.verify()
    except Exception as exc:  # noqa: BLE001 -- any failure on untrusted bytes means "skip this file"
        return f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'unreadable'}"
    return None


def _pick_valid(
    where: str, candidates: Sequence[Any], paths: Callable[[Any], Sequence[Path]],
    limit: int | None, seed: int, skipped: list[tuple[Path, str]],
) -> list[Any]:
    """Header-check ``candidates`` (all, or in a seeded random order until ``limit`` are good).

    Bad files go to ``skipped`` with a warning. The result keeps the candidates' order.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"{where}: limit must be a positive integer or None, got {limit!r}")
    order: Sequence[int] = range(len(candidates))
    if limit is not None:
        order = _rng(seed, 0, 0, _STREAM_SUBSET).permutation(len(candidates)).tolist()
    chosen: list[int] = []
    for i in order:
        if limit is not None and len(chosen) == limit:
            break
        problems = [(p, r) for p in paths(candidates[i]) if (r := header_problem(p)) is not None]
        if problems:
            for path, reason in problems:
                logger.warning("%s: skipped, not a readable image (%s)", format_path(path), reason)
            skipped.extend(problems)
            continue
        chosen.append(i)
    if limit is not None and len(chosen) < limit:
        logger.warning("%s: limit %d asked, only %d readable items available", where, limit, len(chosen))
    return [candidates[i] for i in sorted(chosen)]


# --------------------------------------------------------------------------- captions


def load_captions(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read captions from JSON (an object ``{"name": "caption", ...}``) or CSV (columns ``file,caption``).

    Keys are image file names, stems or paths relative to the image folder; datasets
    match an image by relative path, then file name, then stem. Files are parsed
    (``json``/``csv`` modules), never executed.

    Raises:
        ValueError: unknown suffix, malformed content, a non-string caption, a
            missing column or a duplicate key, naming the file (and line for CSV and
            JSON syntax errors).
        FileNotFoundError: the file is missing.
    """
    path = Path(path)
    where = format_path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise ValueError(f"{where}: captions must be a .json or .csv file, got {suffix or 'no suffix'!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{where}: captions file not found; check the path")
    text = path.read_text(encoding="utf-8-sig")
    return _captions_json(where, text) if suffix == ".json" else _captions_csv(where, text)


def _captions_json(where: str, text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}:{exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object {{\"file name\": \"caption\"}}, got {type(data).__name__}")
    for key, value in data.items():
        if not isinstance(value, str):
            raise ValueError(f"{where}: caption of {key!r} must be a string, got {type(value).__name__}")
    return dict(data)


def _captions_csv(where: str, text: str) -> dict[str, str]:
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError(f"{where}:1: empty CSV; expected a header line 'file,caption'") from None
    except csv.Error as exc:
        raise ValueError(f"{where}:1: invalid CSV ({exc})") from None
    columns = [h.strip().lower() for h in header]
    if "file" not in columns or "caption" not in columns:
        raise ValueError(f"{where}:1: header {header!r} lacks the columns 'file' and 'caption'")
    i_file, i_caption = columns.index("file"), columns.index("caption")
    captions: dict[str, str] = {}
    first_line: dict[str, int] = {}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ValueError(f"{where}:{reader.line_num}: invalid CSV ({exc})") from None
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"{where}:{line}: expected {len(header)} fields ({','.join(header)}), got {len(row)}")
        name = row[i_file].strip()
        if not name:
            raise ValueError(f"{where}:{line}: empty 'file' field")
        if name in captions:
            raise ValueError(f"{where}:{line}: duplicate file {name!r} (first on line {first_line[name]})")
        captions[name], first_line[name] = row[i_caption], line
    return captions


class _CaptionIndex:
    """Looks up a caption by relative path, then file name, then stem."""

    def __init__(self, captions: Mapping[str, str] | None) -> None:
        self._by_path: dict[str, str] = {}
        self._by_name: dict[str, str] = {}
        self._by_stem: dict[str, str] = {}
        for key, caption in (captions or {}).items():
            pure = PurePath(key.replace("\\", "/"))
            self._by_path.setdefault(pure.as_posix(), caption)
            self._by_name.setdefault(pure.name, caption)
            self._by_stem.setdefault(pure.stem, caption)

    def __call__(self, relative: PurePath) -> str | None:
        for table, key in ((self._by_path, relative.as_posix()), (self._by_name, relative.name),
                           (self._by_stem, relative.stem)):
            if key in table:
                return table[key]
        return None


# --------------------------------------------------------------------------- image preparation


def _item(hq: np.ndarray, lq: np.ndarray, caption: str, face: bool, source: Path,
          degradation: dict[str, Any] | None) -> dict[str, Any]:
    return {"hq": hq, "lq": lq, "caption": caption, "face": face, "source": str(source),
            "degradation": degradation}


# --------------------------------------------------------------------------- HQ faces


class HQFaceFolder(_EpochMixin, Sequence):
    """HQ face images of any size with on-the-fly LQ (Sec. 5.1, Eq. 9).

    Each image is cropped to ``crop_box`` (e.g. :data:`LFW_CROP_BOX`), center-cropped
    to a square and resized to ``resolution`` (Lanczos); the LQ is
    ``degradation(hq, item_seed(seed, epoch, index))``, a new one every epoch.

    Args:
        root: folder of images (walked recursively).
        resolution: training side R.
        degradation: the on-the-fly degradation (its config scaled to R, see
            :meth:`DegradationConfig.scaled_to`).
        seed: dataset seed.
        crop_box: ``(left, top, right, bottom)`` applied before squaring, or None.
        limit: use only this many images, a random subset fixed by ``seed``.
        captions: from :func:`load_captions`; missing entries give ``""``.

    Attributes:
        files: the images used, sorted. skipped: ``(path, reason)`` of unreadable files.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        resolution: int,
        degradation: RandomDegradation,
        *,
        seed: int,
        crop_box: tuple[int, int, int, int] | None = None,
        limit: int | None = None,
        captions: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.resolution = _check_resolution("HQFaceFolder", resolution)
        self.seed = _check_seed("HQFaceFolder", seed)
        if crop_box is not None and (len(crop_box) != 4 or crop_box[2] <= crop_box[0] or crop_box[3] <= crop_box[1]):
            raise ValueError(f"HQFaceFolder: crop_box must be (left, top, right, bottom) with right > left "
                             f"and bottom > top, got {crop_box!r}")
        self.crop_box = None if crop_box is None else tuple(int(v) for v in crop_box)
        self.degradation = degradation
        self.skipped: list[tuple[Path, str]] = []
        files = list_images(self.root)
        self.files: list[Path] = _pick_valid(
            f"HQFaceFolder({format_path(self.root)})", files, lambda p: (p,), limit, self.seed, self.skipped
        )
        if not self.files:
            raise ValueError(f"{format_path(self.root)}: no readable images found (suffixes: png, jpg, ...)")
        self._captions = _CaptionIndex(captions)
        logger.info("%s: %d HQ images (%d skipped)", format_path(self.root), len(self.files), len(self.skipped))

    def __len__(self) -> int:
        return len(self.files)

    def relative(self, index: int) -> PurePath:
        """Path of image ``index`` relative to ``root``."""
        return self.files[index].relative_to(self.root)

    def load_hq(self, index: int) -> tuple[np.ndarray, int, tuple[int, int]]:
        """``(hq [R, R, 3] uint8, file index, original (H, W))`` of item ``index``.

        The file index is ``index`` unless that file no longer decodes: then the next
        readable file is used (with a warning), so an epoch never stops on a bad file.
        """
        index = _check_index(index, len(self))
        last: ImageError | None = None
        for k in range(min(_FALLBACK_TRIES, len(self))):
            used = (index + k) % len(self)
            try:
                image = load_image(self.files[used])
            except ImageError as exc:
                logger.warning("%s; using the next image instead", exc)
                last = exc
                continue
            return prepare_square(image, self.resolution, self.crop_box), used, image.shape[:2]
        raise RuntimeError(f"{_FALLBACK_TRIES} consecutive images failed to load, last: {last}")

    def caption(self, path: Path) -> str:
        """Caption of ``path`` (a file under ``root``), ``""`` if none."""
        found = self._captions(path.relative_to(self.root))
        return "" if found is None else found

    def on_the_fly(self, hq: np.ndarray, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The LQ of item ``index`` in the current epoch and its recorded params (with ``"seed"``)."""
        seed = item_seed(self.seed, self.epoch, index, _STREAM_LQ)
        lq, params = self.degradation(hq, seed)
        return lq, {"seed": seed, **params.to_dict()}

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        hq, used, _ = self.load_hq(index)
        lq, params = self.on_the_fly(hq, _check_index(index, len(self)))
        path = self.files[used]
        return _item(hq, lq, self.caption(path), True, path, params)


def _check_index(index: int, length: int) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"dataset index must be an integer, got {type(index).__name__}")
    if not -length <= index < length:
        raise IndexError(f"dataset index {index} out of range for {length} items")
    return int(index) % length


# --------------------------------------------------------------------------- real-world pairs


class PairFit(str, Enum):
    """How a real-world pair is brought to R x R (same geometry for HQ and LQ)."""

    #: Random R x R crop at native pixel scale (a new position every epoch); images
    #: smaller than R are first enlarged so the shorter side is R. Keeps the per-pixel
    #: statistics (noise, blur extent) that degradation mode learns. The default.
    CROP = "crop"
    #: Center square resized to R (Lanczos): the whole scene, degradations shrunk.
    RESIZE = "resize"


class PairedFolder(_EpochMixin, Sequence):
    """Real-world HQ/LQ pairs (Sec. 4.2: Dense-Haze, LOL, SIDD, RealBlur-J), ``face=False``.

    Files pair by key: the path relative to its folder without the suffix (so
    ``hq/a.png`` pairs ``lq/a.jpg``; flat folders pair by stem). Datasets that name
    the two sides differently set ``key_pattern``, a regex searched in that relative
    POSIX path-without-suffix whose groups, joined by ``"/"``, form the key (e.g.
    Dense-Haze ``r"^(\\d+)_(?:GT|hazy)$"``; RealBlur-J ``r"(scene\\d+)/(?:gt|blur)/(?:gt|blur)_(\\d+)$"``).
    Files without a partner (or with a key used twice on one side, or not matching
    the pattern) are logged in one warning and listed in ``.unmatched``.

    When the LQ image's size differs from the HQ's, the LQ is first resized to the
    HQ size (bicubic). Then :class:`PairFit` decides the geometry.

    Args:
        hq_dir, lq_dir: the two folders (may be the same folder with a ``key_pattern``).
        resolution: training side R.
        limit: use this many random pairs, fixed by ``seed`` (the paper: 1000 of SIDD
            and of RealBlur-J); None for all.
        seed: dataset seed (subset, crop positions).
        fit: :class:`PairFit`.
        key_pattern: see above.
        captions: looked up by the HQ file, then the LQ file; missing gives ``""``.

    Attributes:
        pairs: ``(hq_path, lq_path)`` sorted by key. unmatched: files without a
        partner. skipped: ``(path, reason)`` of unreadable files.
    """

    def __init__(
        self,
        hq_dir: str | os.PathLike[str],
        lq_dir: str | os.PathLike[str],
        resolution: int,
        *,
        limit: int | None = None,
        seed: int,
        fit: PairFit | str = PairFit.CROP,
        key_pattern: str | None = None,
        captions: Mapping[str, str] | None = None,
    ) -> None:
        self.hq_dir, self.lq_dir = Path(hq_dir), Path(lq_dir)
        self.resolution = _check_resolution("PairedFolder", resolution)
        self.seed = _check_seed("PairedFolder", seed)
        try:
            self.fit = PairFit(fit)
        except ValueError:
            raise ValueError(f"PairedFolder: fit must be one of {[f.value for f in PairFit]}, got {fit!r}") from None
        try:
            pattern = None if key_pattern is None else re.compile(key_pattern)
        except re.error as exc:
            raise ValueError(f"PairedFolder: key_pattern {key_pattern!r} is not a valid regex ({exc})") from None
        hq = _keyed(self.hq_dir, pattern)
        lq = _keyed(self.lq_dir, pattern)
        self.unmatched: list[Path] = sorted(
            hq.unmatched + lq.unmatched + [p for k, p in hq.files.items() if k not in lq.files]
            + [p for k, p in lq.files.items() if k not in hq.files]
        )
        if self.unmatched:
            names = ", ".join(format_path(p) for p in self.unmatched[:5])
            more = f" and {len(self.unmatched) - 5} more" if len(self.unmatched) > 5 else ""
            logger.warning("PairedFolder(%s, %s): %d files without a partner, ignored: %s%s",
                           format_path(self.hq_dir), format_path(self.lq_dir), len(self.unmatched), names, more)
        candidates = [(hq.files[k], lq.files[k]) for k in sorted(hq.files) if k in lq.files]
        self.skipped: list[tuple[Path, str]] = []
        self.pairs: list[tuple[Path, Path]] = _pick_valid(
            f"PairedFolder({format_path(self.hq_dir)})", candidates, lambda pair: pair, limit, self.seed, self.skipped
        )
        if not self.pairs:
            raise ValueError(
                f"PairedFolder: no readable pairs between {format_path(self.hq_dir)} and {format_path(self.lq_dir)}; "
                "files pair by relative path without suffix (set key_pattern for other naming schemes)"
            )
        self._captions = _CaptionIndex(captions)
        logger.info("PairedFolder(%s): %d pairs", format_path(self.hq_dir), len(self.pairs))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        index = _check_index(index, len(self))
        last: ImageError | None = None
        for k in range(min(_FALLBACK_TRIES, len(self))):
            hq_path, lq_path = self.pairs[(index + k) % len(self)]
            try:
                hq_image, lq_image = load_image(hq_path), load_image(lq_path)
            except ImageError as exc:
                logger.warning("%s; using the next pair instead", exc)
                last = exc
                continue
            hq, lq = self._geometry(hq_image, lq_image, index)
            caption = self._captions(hq_path.relative_to(self.hq_dir))
            if caption is None:
                caption = self._captions(lq_path.relative_to(self.lq_dir))
            return _item(hq, lq, caption or "", False, hq_path, None)
        raise RuntimeError(f"{_FALLBACK_TRIES} consecutive pairs failed to load, last: {last}")

    def _geometry(self, hq: np.ndarray, lq: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        r = self.resolution
        if lq.shape != hq.shape:
            lq = _resize_to(lq, hq.shape[0], hq.shape[1], Image.Resampling.BICUBIC)
        if self.fit is PairFit.RESIZE:
            return prepare_square(hq, r), prepare_square(lq, r)
        h, w = hq.shape[:2]
        if min(h, w) < r:
            f = r / min(h, w)
            h, w = max(r, round(h * f)), max(r, round(w * f))
            hq = _resize_to(hq, h, w, Image.Resampling.LANCZOS)
            lq = _resize_to(lq, h, w, Image.Resampling.LANCZOS)
        rng = _rng(self.seed, self.epoch, index, _STREAM_CROP)
        top, left = int(rng.integers(h - r + 1)), int(rng.integers(w - r + 1))
        crop = (slice(top, top + r), slice(left, left + r))
        return np.ascontiguousarray(hq[crop]), np.ascontiguousarray(lq[crop])


def _resize_to(image: np.ndarray, h: int, w: int, method: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((w, h), method), dtype=np.uint8)


class _Keyed:
    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self.unmatched: list[Path] = []


def _keyed(root: Path, pattern: re.Pattern[str] | None) -> _Keyed:
    """Files under ``root`` by pairing key; duplicates and non-matching names go to ``unmatched``."""
    out = _Keyed()
    duplicates: set[str] = set()
    for path in list_images(root):
        rel = path.relative_to(root).with_suffix("").as_posix()
        key = rel
        if pattern is not None:
            found = pattern.search(rel)
            if found is None:
                out.unmatched.append(path)
                continue
            key = "/".join(g or "" for g in found.groups()) if found.groups() else found.group(0)
        if key in out.files:
            duplicates.add(key)
            out.unmatched.append(path)
            continue
        out.files[key] = path
    for key in duplicates:
        out.unmatched.append(out.files.pop(key))
    return out


# --------------------------------------------------------------------------- off-shelf pool

_VARIANT = re.compile(r"^(?P<stem>.+)_v(?P<k>\d+)$")


class OffShelfPool(_EpochMixin, Sequence):
    """HQ faces whose LQ is, with probability ``probability``, an off-shelf variant (Sec. 5.1).

    The pool is the folder written by ``flipnet-rt degrade HQ_ROOT -o POOL --variants K``:
    it mirrors the HQ folder's layout with ``<stem>_v{k}.png`` per HQ image (``<stem>.png``
    when K = 1). Per item a draw from (seed, epoch, index) picks off-shelf (then a
    uniformly random one of that image's variants) or on-the-fly. A variant with the
    HQ original's size gets the HQ's crop box and squaring; any other size is just
    squared and resized. HQ images without variants always use on-the-fly LQ (counted
    in ``.missing``, logged once); a variant that fails to load falls back to on-the-fly.

    Args:
        base: the HQ dataset (its files, geometry, captions and on-the-fly degradation).
        pool_dir: the ``flipnet-rt degrade`` output folder.
        seed: seed of the off-shelf/on-the-fly draws.
        probability: chance of an off-shelf LQ per item (the paper's 0.5).

    Items: ``"degradation"`` is ``{"offshelf": path, "variant": k}`` for an off-shelf LQ,
    the base's on-the-fly record otherwise.
    """

    def __init__(
        self,
        base: HQFaceFolder,
        pool_dir: str | os.PathLike[str],
        *,
        seed: int,
        probability: float = 0.5,
    ) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"OffShelfPool: probability must be in [0, 1], got {probability!r}")
        self.base = base
        self.pool_dir = Path(pool_dir)
        self.seed = _check_seed("OffShelfPool", seed)
        self.probability = float(probability)
        self.resolution = base.resolution
        variants, exact = _pool_index(self.pool_dir)
        self.variants: list[list[tuple[int, Path]]] = []
        for i in range(len(base)):
            rel = base.relative(i)
            key = rel.parent / rel.stem
            found = variants.get(key) or ([(0, exact[key])] if key in exact else [])
            self.variants.append(sorted(found))
        self.missing = sum(1 for v in self.variants if not v)
        if self.missing:
            logger.warning("OffShelfPool(%s): %d of %d HQ images have no off-shelf variant; they use on-the-fly LQ",
                           format_path(self.pool_dir), self.missing, len(base))

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.base.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        index = _check_index(index, len(self))
        hq, used, original = self.base.load_hq(index)
        path = self.base.files[used]
        caption = self.base.caption(path)
        rng = _rng(self.seed, self.epoch, index, _STREAM_OFFSHELF)
        use_pool = rng.random() < self.probability
        choices = self.variants[used]
        if use_pool and choices:
            k, variant = choices[int(rng.integers(len(choices)))]
            try:
                image = load_image(variant)
            except ImageError as exc:
                logger.warning("%s; using on-the-fly LQ instead", exc)
            else:
                box = self.base.crop_box if image.shape[:2] == original else None
                lq = prepare_square(image, self.resolution, box)
                return _item(hq, lq, caption, True, path, {"offshelf": str(variant), "variant": k})
        lq, params = self.base.on_the_fly(hq, index)
        return _item(hq, lq, caption, True, path, params)


def _pool_index(pool_dir: Path) -> tuple[dict[PurePath, list[tuple[int, Path]]], dict[PurePath, Path]]:
    """``(variants by parent/stem, files by parent/stem)`` of the pool folder."""
    variants: dict[PurePath, list[tuple[int, Path]]] = {}
    exact: dict[PurePath, Path] = {}
    for path in list_images(pool_dir):
        rel = path.relative_to(pool_dir)
        exact[rel.parent / rel.stem] = path
        found = _VARIANT.match(rel.stem)
        if found:
            variants.setdefault(rel.parent / found["stem"], []).append((int(found["k"]), path))
    return variants, exact


# --------------------------------------------------------------------------- mixing


class MixedDataset(_EpochMixin, Sequence):
    """Concatenation of datasets, each whole or a random subset, in a per-epoch order.

    Builds the degradation-mode mix of Sec. 4.2, e.g.
    ``[(dense_haze, None), (lol, None), (sidd, 1000), (realblur_j, 1000), (ffhq, 4000)]``.
    A ``count`` picks that many distinct items of the part, a subset fixed by ``seed``
    (the same every epoch, as the paper builds one training set). With ``shuffle`` the
    concatenation is permuted by (seed, epoch); iterate it sequentially then.
    ``set_epoch`` is forwarded to every part.

    Raises:
        ValueError: no parts, a count above the part's length, or parts of different
            resolutions.
    """

    def __init__(self, parts: Sequence[tuple[Sequence, int | None]], *, seed: int, shuffle: bool = True) -> None:
        if not parts:
            raise ValueError("MixedDataset: needs at least one (dataset, count) part")
        self.seed = _check_seed("MixedDataset", seed)
        self.shuffle = shuffle
        self.parts = [dataset for dataset, _ in parts]
        resolutions = {getattr(d, "resolution", None) for d in self.parts}
        if len(resolutions) > 1:
            raise ValueError(f"MixedDataset: parts have different resolutions {sorted(map(str, resolutions))}")
        self.resolution = resolutions.pop()
        index: list[tuple[int, int]] = []
        for p, (dataset, count) in enumerate(parts):
            n = len(dataset)
            if count is None:
                chosen = range(n)
            else:
                if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= n:
                    raise ValueError(f"MixedDataset: part {p} ({type(dataset).__name__}) has {n} items; "
                                     f"count must be in 1..{n} or None for all, got {count!r}")
                chosen = sorted(_rng(self.seed, 0, p, _STREAM_SUBSET).choice(n, size=int(count), replace=False).tolist())
            index.extend((p, i) for i in chosen)
        self._index = np.asarray(index, dtype=np.int64).reshape(-1, 2)
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        n = len(self._index)
        if not self.shuffle:
            return np.arange(n)
        return _rng(self.seed, self.epoch, 0, _STREAM_ORDER).permutation(n)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for part in self.parts:
            part.set_epoch(epoch)
        self._order = self._permutation()

    def locate(self, index: int) -> tuple[int, int]:
        """``(part number, index in that part)`` of item ``index`` in the current epoch."""
        p, i = self._index[self._order[_check_index(index, len(self))]]
        return int(p), int(i)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        p, i = self.locate(index)
        return self.parts[p][i]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch: ``"hq"``/``"lq"`` ``uint8 [B, R, R, 3]``, ``"face"`` ``bool [B]``,
    lists for ``"caption"``, ``"source"`` and ``"degradation"`` (None entries kept).

    Use as a DataLoader ``collate_fn`` (torch's default cannot batch ``None`` or dicts
    whose keys differ between on-the-fly and off-shelf items).
    """
    if not items:
        raise ValueError("collate: empty batch")
    return {
        "hq": np.stack([it["hq"] for it in items]),
        "lq": np.stack([it["lq"] for it in items]),
        "caption": [it["caption"] for it in items],
        "face": np.array([bool(it["face"]) for it in items], dtype=bool),
        "source": [it["source"] for it in items],
        "degradation": [it["degradation"] for it in items],
    }
