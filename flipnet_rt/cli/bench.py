"""``flipnet-rt bench``: run the configuration matrix and report it (table, JSON, CSV, plot)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from ..backends.registry import KINDS
from ..config.precision import Precision
from .flags import DEVICES


def _csv_list(kind):
    def parse(text: str):
        try:
            return [kind(v) for v in text.split(",") if v]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None

    return parse


def _backend(text: str) -> str:
    if text not in KINDS:
        raise ValueError(text)
    return text


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return text == "on"


def add_parser(sub: argparse._SubParsersAction, model_arg) -> None:
    p = sub.add_parser("bench", help="latency/throughput/memory by stage, with a naive baseline")
    model_arg(p)
    p.add_argument(
        "--engines",
        type=Path,
        metavar="DIR",
        help="an engine directory beside a --model MODEL_DIR|random:CONFIG (the model gives FLOP "
        "counts and the baseline; the engines run)",
    )
    p.add_argument(
        "--backend",
        type=_csv_list(_backend),
        default=["auto"],
        metavar="{" + ",".join(KINDS) + "}[,...]",
        help="auto: the fastest backend that can run the artifacts here (as restore); several, "
        "e.g. onnxruntime,torch, are measured one after another in this run",
    )
    p.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto: a CUDA GPU when the backend can use one, else the CPU"
    )
    p.add_argument(
        "--precision",
        type=Precision.parse,
        choices=list(Precision),
        default=Precision.FP32,
        help="torch backend dtype (engines carry their own precision)",
    )
    p.add_argument("--batch", type=_csv_list(int), default=[1], help="batch sizes, e.g. 1,4,8")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, help="default: the model's (1.5)")
    p.add_argument("--resolution", type=int, help="side of the generated input images (default: the model's)")
    p.add_argument("--cond-cache", type=_csv_list(_on_off), default=[True, False], help="on,off")
    p.add_argument(
        "--cuda-graphs",
        "--cuda-graph",
        dest="cuda_graphs",
        type=_csv_list(_on_off),
        default=[False],
        help="on,off: replay one CUDA graph per network and shape (tensorrt, torch on CUDA)",
    )
    p.add_argument(
        "--compile",
        type=_csv_list(_on_off),
        default=[False],
        help="on,off: torch.compile the networks (torch backend; minutes of compilation first)",
    )
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also time the naive loop (eager PyTorch; needs a model) and report speedups",
    )
    p.add_argument("--json", type=Path, metavar="F", help="rewritten as each configuration finishes")
    p.add_argument("--csv", type=Path, metavar="F", help="rewritten as each configuration finishes")
    p.add_argument("--plot", type=Path, metavar="F.png")


def run(args: argparse.Namespace) -> int:
    """Exit status 0 when the matrix ran, 2 for a usage error (model, backend, extras), 1 otherwise."""
    try:
        return _run(args)
    except ImportError as exc:
        print(
            f"error: bench needs the bench extra ({exc.name} missing): pip install 'flipnet-rt[bench]'", file=sys.stderr
        )
        return 2
    except ValueError as exc:  # BackendUnavailable, EngineError, ConfigError, bad options
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, KeyError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from ..backends.registry import BackendOptions
    from ..engine.artifacts import ModelArtifacts, open_artifacts
    from ..imaging.examples import degrade_example, example_face
    from ..profiler import report
    from ..profiler.runner import BenchConfig, environment, result_record, run_config, with_flops
    from ..runtime.restorer import Restorer

    if not args.model:
        raise ValueError("no model: pass --model ENGINE_DIR|MODEL_DIR or --model random:tiny")
    artifacts = open_artifacts(args.model)  # a model is loaded once, on first use, for every configuration
    model = artifacts.load() if isinstance(artifacts, ModelArtifacts) else None
    if args.baseline and model is None:
        raise ValueError(
            "--baseline runs the naive PyTorch loop: pass --model MODEL_DIR|random:CONFIG "
            "(and the engines with --engines DIR)"
        )
    flops = _model_flops(model)  # counted once, before any backend moves the model

    def make_restorer(backend: str, compile_: bool, graph: bool) -> Restorer:
        return Restorer.load(
            artifacts,
            engine_dir=args.engines,
            backend=backend,
            device=args.device,
            options=BackendOptions(precision=args.precision, cuda_graphs=graph, compile=compile_),
        )

    records: list[dict] = []
    baseline = None
    images: list = []
    guidance = args.guidance
    device, dtype = "cpu", Precision.parse(args.precision).dtype  # the baseline's: the last configuration's

    def save() -> None:  # after every configuration: a run stopped early keeps what it measured
        if args.json:
            report.write_json(args.json, records, baseline)
        if args.csv:
            report.write_csv(args.csv, records)

    for backend in args.backend:
        for compile_ in args.compile:
            for graph in args.cuda_graphs:
                restorer = make_restorer(backend, compile_, graph)
                config = restorer.config
                if not images:  # the first configuration fixes what every configuration shares
                    if model is not None and model.config.digest() != config.digest():
                        raise ValueError(
                            f"--engines {args.engines}: exported from another model than --model {args.model}"
                        )
                    side = args.resolution or config.resolution
                    images = [degrade_example(example_face(side, seed=i), seed=i) for i in range(max(args.batch))]
                    guidance = args.guidance if args.guidance is not None else config.defaults.guidance
                device = "cuda" if str(getattr(restorer.backend, "device", "cpu")).startswith("cuda") else "cpu"
                precision = getattr(getattr(restorer.backend, "manifest", None), "precision", str(args.precision))
                dtype = Precision.parse(precision).dtype
                env = environment(restorer.backend.name, precision)
                peak = _matmul_peak_tflops(device, precision)
                env["matmul_peak_tflops"] = f"{peak:.3f}" if peak else "n/a (no torch)"
                for batch in args.batch:
                    for cache in args.cond_cache:
                        config_ = BenchConfig(
                            batch,
                            cache,
                            graph,
                            compile_,
                            backend=restorer.backend.name if len(args.backend) > 1 else "",
                        )
                        result = run_config(
                            restorer,
                            images,
                            config_,
                            steps=args.steps,
                            warmup=args.warmup,
                            iters=args.iters,
                            guidance=guidance,
                        )
                        per_image = flops.per_image(cache, args.steps, 2 if guidance != 1.0 else 1) if flops else None
                        records.append(
                            result_record(with_flops(result, per_image, peak), env, str(args.model), args.steps)
                        )
                        save()
                        print(f"done {config_.label}: p50 {result.e2e_ms['p50']:.1f} ms", file=sys.stderr)
                restorer.close()
    if args.baseline:
        baseline = time_baseline_record(model, images, args, guidance, device, dtype)
        for r in records:
            if r["config"]["batch"] == args.batch[0]:
                r["speedup_vs_baseline"] = baseline["p50"] / r["e2e_ms"]["p50"]
        save()
    report.table(records, baseline)
    if args.plot:
        report.plot(args.plot, records, baseline)
    return 0


def _model_flops(model):
    """Per-network FLOP counts of ``model`` (one meta-device copy), or None for an engine alone."""
    if model is None:
        return None
    from ..profiler.flops import ModelFlops

    return ModelFlops.count(model)


def time_baseline_record(
    model, images: list, args: argparse.Namespace, guidance: float, device: str, dtype: str | None = None
) -> dict:
    """The naive loop's p50/p90/p99 (ms) at the first batch size, on ``device`` in ``dtype`` (the
    restorers' precision; None: the weights' dtype). It runs after every restorer has closed, and
    a closed CUDA torch backend leaves the shared model on the host: :func:`time_baseline` moves
    the weights to ``device`` for the run itself and back afterwards."""
    from ..profiler.baseline import time_baseline

    baseline = time_baseline(
        model,
        images[: args.batch[0]],
        steps=args.steps,
        guidance=guidance,
        warmup=args.warmup,
        iters=args.iters,
        device=device,
        dtype=dtype,
    )
    return {**baseline, "batch": args.batch[0]}


def _matmul_peak_tflops(device: str, precision: str) -> float | None:
    """Measured matrix-multiply throughput of this device in this run (the peak FLOP rates refer to);
    None without torch (an engine benchmarked with the light runtime)."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    dtype = getattr(torch, Precision.parse(precision).dtype)
    if device == "cpu":
        dtype = torch.float32
    n = 8192 if device == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(2):
        a @ b
    sync()
    reps = 10 if device == "cuda" else 5
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12
