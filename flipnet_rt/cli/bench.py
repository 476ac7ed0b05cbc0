"""``flipnet-rt bench``: run the configuration matrix and report it (table, JSON, CSV, plot)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _csv_list(kind):
    def parse(text: str):
        try:
            return [kind(v) for v in text.split(",") if v]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
    return parse


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return text == "on"


def add_parser(sub: argparse._SubParsersAction, model_arg) -> None:
    p = sub.add_parser("bench", help="latency/throughput/memory by stage, with a naive baseline")
    model_arg(p)
    p.add_argument("--engines", type=Path, metavar="DIR", help="engine directory (ONNX Runtime backend)")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime"), default="auto",
                   help="auto: onnxruntime with --engines, else torch")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                   help="torch backend dtype (engines carry their own precision)")
    p.add_argument("--batch", type=_csv_list(int), default=[1], help="batch sizes, e.g. 1,4,8")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, help="default: the model's (1.5)")
    p.add_argument("--resolution", type=int, help="side of the generated input images (default: the model's)")
    p.add_argument("--cond-cache", type=_csv_list(_on_off), default=[True, False], help="on,off")
    p.add_argument("--cuda-graph", type=_csv_list(_on_off), default=[False],
                   help="on,off: replay one CUDA graph per shape (torch backend on cuda)")
    p.add_argument("--compile", type=_csv_list(_on_off), default=[False],
                   help="on,off: torch.compile the networks (torch backend; minutes of compilation first)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--baseline", action="store_true", help="also time the naive loop and report speedups")
    p.add_argument("--json", type=Path, metavar="F")
    p.add_argument("--csv", type=Path, metavar="F")
    p.add_argument("--plot", type=Path, metavar="F.png")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ImportError as exc:
        print(f"error: bench needs the torch extra ({exc.name} missing): pip install 'flipnet-rt[torch]'", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    import torch

    from ..backends.torch import TorchBackend
    from ..bench import report
    from ..bench.baseline import time_baseline
    from ..bench.runner import BenchConfig, environment, result_record, run_config, with_flops
    from ..examples import degrade_example, example_face
    from ..models import PROMPT_KINDS, load_model
    from ..restorer import Restorer

    if not args.model:
        raise ValueError("no model: pass --model DIR or --model random:tiny")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible; use --device cpu")
    model = load_model(args.model)
    backend = args.backend if args.backend != "auto" else ("onnxruntime" if args.engines else "torch")
    prompts = {k: model.prompt(k).float().numpy() for k in PROMPT_KINDS}
    dtype = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[args.precision]

    def make_restorer(compile_: bool, graph: bool) -> Restorer:
        if backend == "onnxruntime":
            if not args.engines:
                raise ValueError("--backend onnxruntime needs --engines DIR (from `flipnet-rt export`)")
            restorer = Restorer.from_engine(args.engines)
            restorer.backend.manifest.check_model(model.config, args.engines)
            return restorer
        torch_backend = TorchBackend(model, device=args.device, dtype=dtype, compile=compile_, cuda_graphs=graph)
        return Restorer(torch_backend, model.config, prompts)

    precision = args.precision
    if backend == "onnxruntime" and args.engines:
        from ..engine.manifest import Manifest

        precision = Manifest.load(args.engines).precision
    side = args.resolution or model.config.resolution
    images = [degrade_example(example_face(side, seed=i), seed=i) for i in range(max(args.batch))]
    guidance = args.guidance if args.guidance is not None else model.config.defaults.guidance
    env = environment(backend, precision)
    peak = _matmul_peak_tflops(args.device, precision)
    env["matmul_peak_tflops"] = f"{peak:.3f}"

    records = []
    for compile_ in args.compile:
        for graph in args.cuda_graph:
            if graph and args.device != "cuda":
                print("skipped cuda-graph=on: CUDA graphs need --device cuda", file=sys.stderr)
                continue
            if (graph or compile_) and backend != "torch":
                print("skipped compile/cuda-graph: they apply to the torch backend", file=sys.stderr)
                continue
            restorer = make_restorer(compile_, graph)
            for batch in args.batch:
                for cache in args.cond_cache:
                    config = BenchConfig(batch, cache, graph, compile_)
                    result = run_config(restorer, images, config, steps=args.steps, warmup=args.warmup,
                                        iters=args.iters, guidance=guidance)
                    flops = _flops_per_image(model, cache, args.steps, guidance)
                    records.append(result_record(with_flops(result, flops, peak), env, args.model, args.steps))
                    print(f"done {config.label}: p50 {result.e2e_ms['p50']:.1f} ms", file=sys.stderr)
    baseline = None
    if args.baseline:
        baseline = time_baseline(model, images[: args.batch[0]], steps=args.steps, guidance=guidance,
                                 warmup=args.warmup, iters=args.iters, device=args.device)
        baseline = {**baseline, "batch": args.batch[0]}
        for r in records:
            if r["config"]["batch"] == args.batch[0]:
                r["speedup_vs_baseline"] = baseline["p50"] / r["e2e_ms"]["p50"]
    report.table(records, baseline)
    if args.json:
        report.write_json(args.json, records, baseline)
    if args.csv:
        report.write_csv(args.csv, records)
    if args.plot:
        report.plot(args.plot, records, baseline)
    return 0


def _flops_per_image(model, cache: bool, steps: int, guidance: float) -> float:
    """FLOPs one image costs in this configuration, from counts taken on the model (meta device)."""
    import torch

    from ..bench.flops import count_flops

    c = model.config
    h = c.latent_size
    branches = 2 if guidance != 1.0 else 1
    ctx = torch.zeros(1, c.context_tokens, c.text_width)
    one = {"sample": torch.zeros(1, c.latent_channels, h, h), "timestep": torch.zeros(1), "context": ctx}
    total = count_flops(model, "vae_encoder", {"image": torch.zeros(1, 3, c.resolution, c.resolution)})
    total += count_flops(model, "face_encoder", {"image": torch.zeros(1, 3, c.resolution, c.resolution)})
    total += count_flops(model, "vae_decoder", {"latent": torch.zeros(1, c.latent_channels, h, h)})
    if cache:
        cond = count_flops(model, "unet_cond", one)
        joint = count_flops(model, "unet", {**{k: torch.cat([v, v]) for k, v in one.items()}, "phi": torch.ones(1)})
        per_step = joint - cond  # the input half of the joint graph (BoostHub included)
        total += branches * (cond + steps * per_step)
    else:
        joint = count_flops(model, "unet", {**{k: torch.cat([v, v]) for k, v in one.items()}, "phi": torch.ones(1)})
        total += branches * steps * joint
    return float(total)


def _matmul_peak_tflops(device: str, precision: str) -> float:
    """Measured matrix-multiply throughput of this device in this run (the peak FLOP rates refer to)."""
    import torch

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
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
