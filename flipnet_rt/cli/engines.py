"""``flipnet-rt export``, ``build`` and ``verify``: engine directories from a model, and their checks.

These need the ``export`` extra (torch, onnx); ``build`` also needs TensorRT. Imported lazily.
Exit status: 0 done (verify: passed), 1 verify FAILED or the work failed, 2 a usage error (no or
wrong model, a missing extra, an unusable engine directory).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..config.precision import Precision
from .flags import deprecated_alias


def add_parsers(sub: argparse._SubParsersAction, model_arg) -> None:
    export = sub.add_parser("export", help="export every network to ONNX: an engine directory")
    model_arg(export)
    export.add_argument("-o", "--output", required=True, type=Path, metavar="ENGINE_DIR")
    export.add_argument(
        "--precision",
        type=Precision.parse,
        choices=(Precision.FP32, Precision.FP16),
        default=Precision.FP32,
        help="fp16 halves memory and runs on tensor cores; about 1e-3 relative error",
    )
    export.add_argument("--resolution", type=int, help="working resolution in pixels (default: the model's)")
    profile_max = export.add_argument(
        "--profile-max-batch",
        type=int,
        default=4,
        metavar="N",
        help="largest image batch of the engines' profiles (`build --profile-batch` can narrow it)",
    )
    deprecated_alias(export, "--max-batch", profile_max)  # --max-batch is Triton's batch (serve, export-triton)
    export.add_argument(
        "--networks",
        metavar="A,B,...",
        help="export only these networks (default: all); e.g. leave out the joint `unet` "
        "when only the condition cache (the default) will run",
    )
    export.add_argument(
        "--store-fp16",
        action="store_true",
        help="fp32 graphs whose weights fp16 holds exactly (a model saved in fp16) stored at half the size; lossless",
    )

    build = sub.add_parser("build", help="build TensorRT plans for an engine directory (needs TensorRT)")
    build.add_argument("engine_dir", type=Path, metavar="ENGINE_DIR")
    build.add_argument("--precision", type=Precision.parse, choices=list(Precision), default=Precision.FP16)
    batch = build.add_argument(
        "--profile-batch",
        metavar="MIN:OPT:MAX",
        help="image batch range of the profiles (default: the export's, up to its --profile-max-batch)",
    )
    deprecated_alias(build, "--batch", batch)
    side = build.add_argument(
        "--profile-resolution",
        metavar="MIN:OPT:MAX",
        help="image side range of the profiles in pixels (default: the export's)",
    )
    deprecated_alias(build, "--resolution", side)  # --resolution is one size in pixels (export, bench)
    build.add_argument("--timing-cache", type=Path, metavar="PATH", help="reuse/save TensorRT tactic timings")
    build.add_argument("--refittable", action="store_true", help="plans whose weights can be swapped (refit)")

    verify = sub.add_parser(
        "verify",
        help="compare every engine backend that can run here (ONNX Runtime CPU/CUDA, "
        "TensorRT) with PyTorch fp32; the others are listed as skipped",
    )
    verify.add_argument("engine_dir", type=Path, metavar="ENGINE_DIR")
    model_arg(verify)
    verify.add_argument("--steps", type=int, default=4, help="sampling steps of the end-to-end check")
    verify.add_argument("--seed", type=int, default=0)


def _error(message: str, status: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "export":
            return _export(args)
        if args.command == "build":
            return _build(args)
        return _verify(args)
    except ImportError as exc:
        extra = "tensorrt" if args.command == "build" else "export"
        return _error(
            f"{args.command} needs the {extra} extra ({exc.name} missing): pip install 'flipnet-rt[{extra}]'", 2
        )
    except ValueError as exc:  # EngineError, ConfigError, BackendUnavailable, bad options: usage
        return _error(str(exc), 2)
    except (OSError, KeyError, RuntimeError) as exc:
        return _error(str(exc))


def _export(args: argparse.Namespace) -> int:
    from flipnet_rt.export.exporter import export_engine
    from flipnet_rt.models import load_model

    if not args.model:
        return _error("no model: pass --model DIR or --model random:<config>", 2)
    start = time.perf_counter()
    networks = [n.strip() for n in args.networks.split(",") if n.strip()] if args.networks else None
    manifest = export_engine(
        load_model(args.model),
        args.output,
        precision=args.precision.value,
        resolution=args.resolution,
        max_batch=args.profile_max_batch,
        networks=networks,
        fp16_storage=args.store_fp16,
    )
    size = sum(f["bytes"] for f in manifest.files.values())
    print(
        f"exported {len(manifest.networks)} networks ({args.precision.value}, {size / 2**20:.1f} MiB) to "
        f"{args.output} in {time.perf_counter() - start:.1f} s"
    )
    return 0


def _build(args: argparse.Namespace) -> int:
    from flipnet_rt.export.tensorrt_build import build, parse_range

    batch = parse_range(args.profile_batch, "profile-batch") if args.profile_batch else None
    resolution = parse_range(args.profile_resolution, "profile-resolution") if args.profile_resolution else None
    manifest = build(
        args.engine_dir,
        precision=args.precision.value,
        batch=batch,
        resolution=resolution,
        timing_cache=args.timing_cache,
        refittable=args.refittable,
    )
    built = manifest.tensorrt
    assert built is not None, "build() records its plans in the manifest"
    print(f"built {len(built.plans)} TensorRT plans for {built.gpu}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from flipnet_rt.export.verify import verify
    from flipnet_rt.imaging.examples import degrade_example, example_face

    if not args.model:
        return _error("no model: pass --model DIR or --model random:<config> (the one the engine came from)", 2)
    images = [degrade_example(example_face(256, seed=s), seed=s) for s in range(2)]
    report = verify(args.engine_dir, args.model, images=images, steps=args.steps, seed=args.seed)
    for line in report.lines():
        print(line)
    print("verify: " + ("passed" if report.passed else "FAILED"))
    return 0 if report.passed else 1
