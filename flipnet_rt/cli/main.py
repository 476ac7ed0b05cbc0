"""The ``flipnet-rt`` command line: a thin layer over the library.

    flipnet-rt restore INPUT... -o OUTDIR [--model DIR|random:CONFIG] [sampler options] [face options]
                       [--aligned] [--save-faces DIR] [--report F.json]
    flipnet-rt degrade INPUT... -o OUTDIR --variants K [--model ...] [sampler options]
    flipnet-rt video IN -o OUT [--model ...] [sampler, face, temporal and encoder options]
    flipnet-rt cluster restore|degrade|video INPUT... -o OUT [--address ...] [--actors N] ... (Ray; docs/cluster.md)
    flipnet-rt info [--model ENGINE_DIR|MODEL_DIR|random:CONFIG]
    flipnet-rt export --model DIR|random:CONFIG -o ENGINE_DIR [--precision fp32|fp16] ...
    flipnet-rt build ENGINE_DIR [--precision fp16|bf16|fp32] [--batch MIN:OPT:MAX] ...
    flipnet-rt verify ENGINE_DIR --model DIR|random:CONFIG
    flipnet-rt eval --hq DIR --model ... [--crop L,T,R,B] [--limit N] [--json F] [--out DIR]
    flipnet-rt bench --model ... [matrix options]
    flipnet-rt serve --model ENGINE_DIR [--host 127.0.0.1] [--http-port P] [--grpc-port P] ... (.venv-serve)
    flipnet-rt export-triton ENGINE_DIR -o REPO [--platform onnxruntime|tensorrt]

Exit status: 0 when every image was written, 1 when any input failed (the others are still
written), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..backends.registry import KINDS
from ..sampling import SamplerKind, Spacing
from . import bench, cluster, engines, evaluate, serve, video
from . import info as info_cmd
from .faces import aligned_arg, face_args
from .flags import DEVICES, choices
from .jobs import run_jobs, variants_arg

log = logging.getLogger("flipnet_rt.cli")

MODEL_ENV = "FLIPNET_MODEL"


def _model_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=os.environ.get(MODEL_ENV),
        metavar="DIR|random:CONFIG",
        help=f"engine directory (from `flipnet-rt export`, runs on ONNX Runtime), model directory, "
        f"or random:tiny / random:sd21-base for seeded random weights (default: ${MODEL_ENV})",
    )


def _job_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (walked recursively)")
    parser.add_argument(
        "-o", "--output", required=True, type=Path, metavar="OUTDIR", help="output folder; inputs are never overwritten"
    )
    run_args(parser)


def run_args(parser: argparse.ArgumentParser) -> None:
    """--model, the sampling options, --batch-size and the backend options (restore, degrade, eval)."""
    _model_arg(parser)
    g = parser.add_argument_group("sampling (defaults come from the model's flipnet.json)")
    g.add_argument("--steps", type=int, help="denoising steps")
    g.add_argument("--sampler", choices=choices(SamplerKind), help="ddim, dpmpp-2m (DPM-Solver++ 2M) or euler")
    g.add_argument("--spacing", choices=choices(Spacing), help="timestep spacing")
    g.add_argument("--guidance", type=float, help="classifier-free guidance scale; 1 disables it (half the UNet work)")
    g.add_argument("--phi", type=float, help="BoostHub enhance weight (Eq. 5): more LQ structure vs. more prior")
    g.add_argument("--cond-t", dest="t_cond", type=int, help="timestep of the condition stream (0: clean)")
    g.add_argument(
        "--strength",
        type=float,
        help="start from the noised input at this fraction of the schedule, running "
        "only that fraction of the steps (faster, stays closer to the input)",
    )
    g.add_argument("--eta", type=float, help="DDIM stochasticity (0 deterministic)")
    g.add_argument(
        "--color-fix",
        type=int,
        metavar="LEVELS",
        help="restore: keep the input's colours below a LEVELS-level wavelet band "
        "(StableSR's colour fix; 0 turns it off)",
    )
    g.add_argument("--seed", type=int, default=0, help="base seed; each image gets its own stream")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        metavar="B",
        help="images per engine batch (face crops); whole images and video: faces per engine call",
    )
    b = parser.add_argument_group("backend (chosen once; see `flipnet-rt info` for what this machine has)")
    b.add_argument(
        "--backend",
        default="auto",
        choices=KINDS,
        help="auto: TensorRT (engine directory with plans) > ONNX Runtime CUDA > PyTorch CUDA > "
        "ONNX Runtime CPU, by what is installed and what --model is",
    )
    b.add_argument(
        "--device", default="auto", choices=DEVICES, help="auto: a CUDA GPU when the backend can use one, else the CPU"
    )
    b.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="tensorrt/torch on CUDA: one CUDA graph per network and batch shape (less launch "
        "overhead; costs a capture and GPU memory per shape)",
    )
    b.add_argument(
        "--low-memory",
        action="store_true",
        help="ONNX Runtime CPU: no pre-packed weight copies and no memory arena (measured on the demo "
        "engine at batch 8: 204 MB instead of 885 MB resident; costs allocations at every call)",
    )
    b.add_argument(
        "--compile",
        action="store_true",
        help="torch backend: torch.compile the UNet (minutes of compilation at the first batch of "
        "each new shape, then faster steps)",
    )
    parser.add_argument(
        "--no-cond-cache",
        dest="cond_cache",
        action="store_false",
        help="run the joint 2B UNet every step instead of caching the condition's "
        "BoostHub keys/values (same result, about twice the UNet work)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flipnet-rt", description="FLIPNET blind face restoration runtime")
    parser.add_argument("--version", action="version", version=f"flipnet-rt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    restore = sub.add_parser("restore", help="restore every face of whole images (or aligned face crops: --aligned)")
    _job_args(restore)
    w = restore.add_argument_group("whole images")
    aligned_arg(w)
    w.add_argument(
        "--save-faces",
        type=Path,
        metavar="DIR",
        help="also write each restored face: DIR/cropped_faces (aligned input), "
        "DIR/restored_faces, DIR/cmp (side by side)",
    )
    w.add_argument(
        "--report",
        type=Path,
        metavar="F.json",
        help="write every image's faces (box, score, landmarks, seed, restored or why not)",
    )
    face_args(restore)

    degrade = sub.add_parser("degrade", help="synthesise real-world-like degraded versions of HQ faces (Sec. 5.1)")
    _job_args(degrade)
    variants_arg(degrade)

    info = sub.add_parser("info", help="model, backend and environment summary")
    _model_arg(info)
    engines.add_parsers(sub, _model_arg)
    bench.add_parser(sub, _model_arg)
    evaluate.add_parser(sub, run_args)
    serve.add_parser(sub, _model_arg)
    video.add_parser(sub, run_args)
    cluster.add_parser(sub, run_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if args.command == "info":
        return info_cmd.run(args.model)
    if args.command in ("export", "build", "verify"):
        return engines.run(args)
    if args.command == "bench":
        return bench.run(args)
    if args.command == "eval":
        return evaluate.run(args)
    if args.command in serve.COMMANDS:
        return serve.run(args)
    if args.command == "video":
        return video.run(args)
    if args.command == "cluster":
        return cluster.run(args)
    if not args.model:
        parser.error(f"no model: pass --model DIR or --model random:tiny, or set ${MODEL_ENV}")
    if args.batch_size < 1:
        parser.error("--batch-size must be 1 or more")
    variants = getattr(args, "variants", 1)
    if variants < 1:
        parser.error("--variants must be 1 or more")
    try:
        return run_jobs(args, variants=variants)
    except KeyboardInterrupt:
        print("interrupted; images already written are complete, nothing partial was left", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
