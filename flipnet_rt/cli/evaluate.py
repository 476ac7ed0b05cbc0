"""``flipnet-rt eval --hq DIR``: restoration quality on HQ faces (see :mod:`flipnet_rt.evaluation.scoring`).

Needs the ``eval`` extra (scikit-image, OpenCV; dlib-bin + face-recognition-models for the identity
distance). An unreadable HQ file costs one line on stderr and is left out of the means; the exit
status is 1 when any file failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..imaging.geometry import prepare_square
from ..imaging.io import ImageError, format_path, load_image
from ..jobs.batchio import is_image_path
from .faces import fidelity_arg, keep_detail_arg

if TYPE_CHECKING:
    from ..evaluation.scoring import EvalReport, LevelsReport


def add_parser(sub: argparse._SubParsersAction, run_args) -> None:
    p = sub.add_parser("eval", help="synthesise LQ from HQ faces (fixed seed), restore, report PSNR/SSIM/identity")
    p.add_argument(
        "--hq", required=True, type=Path, metavar="DIR", help="folder of HQ face images (walked recursively)"
    )
    p.add_argument(
        "--crop",
        metavar="L,T,R,B",
        help="crop box applied to every HQ image before squaring and resizing (LFW deep-funneled faces: 50,45,200,195)",
    )
    p.add_argument(
        "--size",
        type=int,
        default=0,
        metavar="PX",
        help="score at this face size (0: the model's resolution). Larger faces are restored at the "
        "model's size and brought back with the input's detail above it (keep-detail)",
    )
    keep_detail_arg(p)
    p.add_argument("--limit", type=int, default=0, metavar="N", help="the first N images in name order (0: all)")
    p.add_argument(
        "--identity",
        choices=("auto", "dlib", "off"),
        default="auto",
        help="identity distance with dlib's face descriptor (auto: when dlib-bin and "
        "face-recognition-models are installed)",
    )
    p.add_argument(
        "--levels",
        metavar="L1,L2,...",
        help="score at these degradation levels instead of the training degradation: none, mild, "
        "moderate, heavy, train (flipnet_rt/evaluation/levels.py); per level the input, the model's output "
        "(fidelity 0) and the output as delivered (--fidelity), with a no-reference detail ratio",
    )
    fidelity_arg(p)
    p.add_argument("--json", type=Path, metavar="FILE", help="write per-image scores and the means")
    p.add_argument("--out", type=Path, metavar="DIR", help="also write the LQ, restored and side-by-side images")
    run_args(p)
    p.set_defaults(batch_size=8)


def _crop(text: str | None) -> tuple[int, int, int, int] | None:
    if not text:
        return None
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"--crop {text}: give four integers L,T,R,B with R > L and B > T")
    return box  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    try:
        from ..evaluation import scoring as evaluation
        from .jobs import UsageError, load_restorer

        crop = _crop(args.crop)
        levels = None
        if args.levels is not None:
            from ..evaluation.levels import parse_levels

            levels = parse_levels(args.levels)
        from ..faces.pipeline import CropRestorer, FaceOptions, FaceRestorer

        face_options = FaceOptions(keep_detail=args.keep_detail, fidelity=args.fidelity)  # checked here, once
        if not args.hq.is_dir():
            raise ValueError(f"--hq {args.hq}: no such folder")
        if not args.model:
            raise ValueError("no model: pass --model DIR (an engine or model directory) or random:CONFIG")
        identity = None
        if args.identity == "dlib" or (args.identity == "auto" and evaluation.IdentityModel.available()):
            identity = evaluation.IdentityModel()
        elif args.identity == "auto":
            print(
                "note: identity distance off (pip install 'flipnet-rt[eval]' for dlib-bin and face-recognition-models)",
                file=sys.stderr,
            )
    except ImportError as exc:
        print(f"error: eval needs the eval extra ({exc.name} missing): pip install 'flipnet-rt[eval]'", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    files = sorted(p for p in args.hq.rglob("*") if p.is_file() and is_image_path(p))
    if args.limit > 0:
        files = files[: args.limit]
    if not files:
        print(f"error: --hq {args.hq}: no images found", file=sys.stderr)
        return 1
    try:
        restorer, options = load_restorer(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.size < 0:
        print(f"error: --size {args.size}: give a size in pixels, or 0 for the model's", file=sys.stderr)
        return 2
    resolution = args.size or restorer.config.resolution
    # the faces at their own size, as whole images get them (keep-detail above the model's), blended by --fidelity
    faces_restorer = FaceRestorer(restorer, options=face_options, sampling=options)
    faces, errors = [], []
    for path in files:
        try:
            faces.append((str(path.relative_to(args.hq)), prepare_square(load_image(path), resolution, crop)))
        except ImageError as exc:
            errors.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
    meta = dict(
        model=str(args.model),
        hq=str(args.hq),
        crop=list(crop) if crop else None,
        backend=restorer.backend.name,
        size=resolution,
        keep_detail=args.keep_detail if resolution != restorer.config.resolution else None,
    )
    report: EvalReport | LevelsReport
    if levels is not None:
        report = evaluation.evaluate_levels(
            faces_restorer,
            faces,
            levels,
            options=options,
            seed=args.seed,
            batch_size=args.batch_size,
            identity=identity,
            progress=sys.stderr.isatty(),
        )
        report.meta.update(meta, errors=errors)
        _print_levels(report)
    else:
        report = evaluation.evaluate(
            CropRestorer(faces_restorer),
            faces,
            options=options,
            seed=args.seed,
            batch_size=args.batch_size,
            identity=identity,
            out_dir=args.out,
            progress=sys.stderr.isatty(),
        )
        report.errors = errors
        report.meta.update(meta, fidelity=args.fidelity)
        _print_table(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        tmp.replace(args.json)
        print(f"wrote {format_path(args.json)}", file=sys.stderr)
    return 1 if errors else 0


def _print_levels(report) -> None:
    """One line per level and metric: input, the model's output (fidelity 0), as delivered, mean W."""
    from ..evaluation.scoring import VARIANTS, format_value

    summary = report.summary()
    fidelity = report.meta.get("fidelity")
    print(
        f"{len(report.faces) // max(len(summary), 1)} faces, seed {report.meta.get('seed')}; "
        f"columns: input | fidelity 0 (the model) | fidelity {fidelity}"
    )
    for level, entry in summary.items():
        cells = []
        for metric in report.METRICS:
            values = " / ".join(
                "inf"
                if metric == "psnr" and entry[metric][v] is None and entry["psnr_infinite"][v]
                else format_value(entry[metric][v], "psnr" if metric == "psnr" else "x")
                for v in VARIANTS
            )
            cells.append(f"{metric} {values}")
        print(f"{level:<9} " + "; ".join(cells) + f"; mean W {entry['weight']:.2f}")


def _print_table(report) -> None:
    from ..evaluation.scoring import format_value

    summary = report.summary()
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for key, label, _ in report.METRICS:
            print(
                f"{label}: input {format_value(summary[key]['input'], key)} -> "
                f"restored {format_value(summary[key]['restored'], key)}"
            )
        return
    table = Table(title=f"{len(report.images)} faces, seed {report.meta.get('seed')}")
    table.add_column("metric")
    table.add_column("input (LQ)", justify="right")
    table.add_column("restored", justify="right")
    for key, label, higher in report.METRICS:
        arrow = "higher is better" if higher else "lower is better"
        table.add_row(
            f"{label} ({arrow})", format_value(summary[key]["input"], key), format_value(summary[key]["restored"], key)
        )
    Console().print(table)
