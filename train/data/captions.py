"""Captions for training images: JSON or CSV files, looked up by relative path, file name or stem."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePath

from flipnet_rt.imaging.io import format_path


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
        raise ValueError(f'{where}: expected a JSON object {{"file name": "caption"}}, got {type(data).__name__}')
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


class CaptionIndex:
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
        for table, key in (
            (self._by_path, relative.as_posix()),
            (self._by_name, relative.name),
            (self._by_stem, relative.stem),
        ):
            if key in table:
                return table[key]
        return None
