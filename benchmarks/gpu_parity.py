"""GPU check, part (c): ``random:sd21-base`` in fp16 at 512 px on the torch backend, 4 steps.

1. Parity: eager and CUDA graphs, condition cache on and off, each against eager fp32 with the cache
   off (the reference): relative L2 of the latents and their NaN count; fp16 vs fp32 is the
   precision's own error, graphs vs eager and cache vs joint should add nothing above it.
2. Issue 14 item 12: attention computed in fp32 (what fp16 ONNX exports do, ``set_attention_upcast``)
   vs in fp16 (SDPA's fused kernels): the 4-step time and NaN count of each. This measures torch's
   cost of the upcast; whether the casts keep TensorRT from its fused attention needs TensorRT.

Every record is written to ``--json`` as soon as it is measured (the file is rewritten whole), with
the card, driver, date and commit. Random weights: parity and NaN counts, not image quality.
Run from the repository root: ``PYTHONPATH=. python3 benchmarks/gpu_parity.py --json OUT.json``.

Part (d) in the same process (issue 26 item 5): anything after ``--`` runs ``flipnet-rt bench``
with those arguments on the model already loaded, so ``random:sd21-base`` is built in fp32 on the
CPU once, not twice. A failed parity part is reported and the bench still runs; the exit status is
non-zero when either failed. ``--device cpu --model random:tiny`` tries the whole flow without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def environment(device: str = "cuda") -> dict[str, str]:
    name = torch.cuda.get_device_properties(0).name if device.startswith("cuda") else "cpu"
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        driver = "unknown"
    return {
        "gpu": name,
        "driver": driver,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit(),
    }


def commit() -> str:
    """``$GPU_CHECK_COMMIT`` (gpu_check.sh passes the commit named where the device call was made),
    else this tree's commit by git, else "unknown": the tree copied to the GPU machine has no .git
    and that machine may have no git (issue 26 item 4)."""
    given = os.environ.get("GPU_CHECK_COMMIT", "").strip()
    if given:
        return given
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        return "unknown"
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (result.stdout.strip() if result.returncode == 0 else "") or "unknown"


def run_bench(model_spec: str, model, bench_argv: list[str]) -> int:
    """``flipnet-rt bench --model MODEL_SPEC BENCH_ARGV`` in this process, on the model already loaded
    (``random:sd21-base`` is built in fp32 on the CPU once for both parts). Its exit status."""
    from flipnet_rt.cli import bench as bench_cli
    from flipnet_rt.engine.artifacts import ModelArtifacts

    class Loaded(ModelArtifacts):  # the records name the model as --model would
        def __str__(self) -> str:
            return str(self.source)

    parser = argparse.ArgumentParser(prog="flipnet-rt")
    bench_cli.add_parser(parser.add_subparsers(dest="command"), lambda p: p.add_argument("--model"))
    args = parser.parse_args(["bench", "--model", model_spec, *bench_argv])
    args.model = Loaded(model_spec, _model=model)
    return bench_cli.run(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    own, bench_argv = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, None)
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Anything after -- runs `flipnet-rt bench` on the same loaded model "
        "after the parity part (part d of the GPU check).",
    )
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--model", default="random:sd21-base")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cuda", help="cpu: try the script (and the bench's call) without a GPU")
    parser.add_argument("--skip-parity", action="store_true", help="only the bench after --")
    args = parser.parse_args(own)

    from flipnet_rt.models import load_model

    start = time.perf_counter()
    model = load_model(args.model)
    print(f"loaded {args.model} in {time.perf_counter() - start:.1f} s", flush=True)
    status = 0
    if not args.skip_parity:
        try:
            parity(model, args)
        except Exception:  # noqa: BLE001 - recorded, and the bench still runs on the same model
            traceback.print_exc()
            print("parity: FAILED (the bench still runs)", flush=True)
            status = 1
        finally:  # the bench gets the model where and as load_model gave it: fp32 on the CPU (its weights
            # rounded through fp16 by now, which the fp16 bench does not see: fp16 -> fp32 -> fp16 is exact)
            model.to(device="cpu", dtype=torch.float32)
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    if bench_argv is not None:
        code = run_bench(args.model, model, bench_argv)
        print(f"bench: exit {code}", flush=True)
        status = status or code
    return status


def parity(model, args: argparse.Namespace) -> None:
    from flipnet_rt.backends.torch import TorchBackend
    from flipnet_rt.config.options import Mode, SamplingOptions
    from flipnet_rt.models import PROMPT_KINDS
    from flipnet_rt.models.boosthub import set_attention_upcast
    from flipnet_rt.runtime.core import DiffusionCore

    env = environment(args.device)
    records: list[dict] = []
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def record(**fields) -> None:
        records.append({**fields, "environment": env})
        print(json.dumps(fields), flush=True)
        args.json.write_text(json.dumps(records, indent=2) + "\n")

    config = model.config
    prompts = {k: model.prompt(k).float().cpu().numpy() for k in PROMPT_KINDS}
    options = SamplingOptions.from_config(config, steps=args.steps)
    r = config.resolution
    pixels = np.random.default_rng(0).uniform(-1, 1, (args.batch, 3, r, r)).astype(np.float32)
    seeds = list(range(args.batch))

    def run(backend, cache: bool) -> tuple[np.ndarray, float]:
        core = DiffusionCore(backend, config, prompts, cond_cache=cache)
        core.latents(pixels, Mode.RESTORE, options, seeds)  # warm-up (and the graphs' capture)
        sync()
        start = time.perf_counter()
        latents = core.latents(pixels, Mode.RESTORE, options, seeds)
        sync()
        return latents, 1e3 * (time.perf_counter() - start)

    reference_backend = TorchBackend(model, device=args.device, dtype="float32")
    reference, ms = run(reference_backend, cache=False)
    reference_backend.close()
    record(
        part="parity", label="fp32 eager cache=off (reference)", rel_l2=0.0, nan=int(np.isnan(reference).sum()), ms=ms
    )

    def compare(label: str, latents: np.ndarray, ms: float) -> None:
        rel = float(np.linalg.norm(latents - reference) / np.linalg.norm(reference))
        record(part="parity", label=label, rel_l2=rel, nan=int(np.isnan(latents).sum()), ms=ms)

    for graphs in (False, True) if cuda else (False,):  # CUDA graphs need CUDA
        backend = TorchBackend(model, device=args.device, dtype="float16", cuda_graphs=graphs)
        for cache in (True, False):
            latents, ms = run(backend, cache)
            compare(f"fp16 {'graphs' if graphs else 'eager'} cache={'on' if cache else 'off'}", latents, ms)
        backend.close()

    # Item 12: the attention upcast of fp16 exports, as torch runs it.
    backend = TorchBackend(model, device=args.device, dtype="float16")
    for upcast in (False, True, False):  # off twice: the first off warms the GPU up for both
        set_attention_upcast(model.unet.unet, upcast)
        latents, ms = run(backend, cache=True)
        compare(f"fp16 eager cache=on attention {'fp32 (export default)' if upcast else 'fp16 (SDPA)'}", latents, ms)
    set_attention_upcast(model.unet.unet, False)
    backend.close()


if __name__ == "__main__":
    sys.exit(main())
