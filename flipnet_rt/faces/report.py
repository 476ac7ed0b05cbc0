"""What ``--report F.json`` and ``--save-faces DIR`` write (the CLI calls these).

Report (JSON, one document per run)::

    {"meta": {...}, "images": [{"image": "a.jpg", "output": "out/a.png", "width": W, "height": H,
      "seed": s, "faces": [{"index": 0, "box": [x0, y0, x1, y1], "score": 0.99,
      "landmarks": {"left_eye": [x, y], ...}, "seed": 123, "restored": true, "crop_size": 64,
      "keep_detail": false, "fidelity": 0.31, "fidelity_source": "estimator"}, ...], "restored": n, "error": null}]}

Saved faces (GFPGAN's layout, PNG): ``DIR/cropped_faces/<stem>_<index>.png`` (the aligned input,
at the crop size S), ``DIR/restored_faces/<stem>_<index>.png`` (the face as pasted, at S) and
``DIR/cmp/<stem>_<index>.png`` (the two side by side). Only restored faces are saved.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .types import FaceResult


def image_entry(
    name: str,
    image_shape: Sequence[int],
    results: Sequence[FaceResult],
    *,
    seed: int | None = None,
    output: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """One image's entry of the report (``error``: the one-line message when the image failed)."""
    return {
        "image": name,
        "output": output,
        "width": int(image_shape[1]) if image_shape else None,
        "height": int(image_shape[0]) if image_shape else None,
        "seed": seed,
        "faces": [r.to_dict() for r in results],
        "restored": sum(r.restored for r in results),
        "error": error,
    }


def write_report(path: Path, entries: Sequence[dict[str, Any]], meta: dict[str, Any] | None = None) -> None:
    """Write the report atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta or {}, "images": list(entries)}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_faces(directory: Path, stem: str, results: Sequence[FaceResult]) -> list[Path]:
    """Write every restored face's aligned input, output and comparison; returns the paths written."""
    from ..imaging.io import save_image

    written = []
    for r in results:
        if not r.restored or r.aligned is None or r.output is None:
            continue
        name = f"{stem}_{r.index:02d}.png"
        for sub, image in (
            ("cropped_faces", r.aligned),
            ("restored_faces", r.output),
            ("cmp", np.concatenate([r.aligned, r.output], axis=1)),
        ):
            path = Path(directory) / sub / name
            save_image(image, path)
            written.append(path)
    return written
