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
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch


def environment() -> dict[str, str]:
    props = torch.cuda.get_device_properties(0)
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        driver = "unknown"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"gpu": props.name, "driver": driver, "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": commit or "unknown"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--model", default="random:sd21-base")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()

    from flipnet_rt.backends.torch import TorchBackend
    from flipnet_rt.core import DiffusionCore
    from flipnet_rt.models import PROMPT_KINDS, load_model
    from flipnet_rt.models.boosthub import set_attention_upcast
    from flipnet_rt.options import Mode, SamplingOptions

    env = environment()
    records: list[dict] = []

    def record(**fields) -> None:
        records.append({**fields, "environment": env})
        print(json.dumps(fields), flush=True)
        args.json.write_text(json.dumps(records, indent=2) + "\n")

    model = load_model(args.model)
    config = model.config
    prompts = {k: model.prompt(k).float().cpu().numpy() for k in PROMPT_KINDS}
    options = SamplingOptions.from_config(config, steps=args.steps)
    r = config.resolution
    pixels = np.random.default_rng(0).uniform(-1, 1, (args.batch, 3, r, r)).astype(np.float32)
    seeds = list(range(args.batch))

    def run(backend, cache: bool) -> tuple[np.ndarray, float]:
        core = DiffusionCore(backend, config, prompts, cond_cache=cache)
        core.latents(pixels, Mode.RESTORE, options, seeds)  # warm-up (and the graphs' capture)
        torch.cuda.synchronize()
        start = time.perf_counter()
        latents = core.latents(pixels, Mode.RESTORE, options, seeds)
        torch.cuda.synchronize()
        return latents, 1e3 * (time.perf_counter() - start)

    reference_backend = TorchBackend(model, device="cuda", dtype="float32")
    reference, ms = run(reference_backend, cache=False)
    reference_backend.close()
    record(part="parity", label="fp32 eager cache=off (reference)", rel_l2=0.0, nan=int(np.isnan(reference).sum()),
           ms=ms)

    def compare(label: str, latents: np.ndarray, ms: float) -> None:
        rel = float(np.linalg.norm(latents - reference) / np.linalg.norm(reference))
        record(part="parity", label=label, rel_l2=rel, nan=int(np.isnan(latents).sum()), ms=ms)

    for graphs in (False, True):
        backend = TorchBackend(model, device="cuda", dtype="float16", cuda_graphs=graphs)
        for cache in (True, False):
            latents, ms = run(backend, cache)
            compare(f"fp16 {'graphs' if graphs else 'eager'} cache={'on' if cache else 'off'}", latents, ms)
        backend.close()

    # Item 12: the attention upcast of fp16 exports, as torch runs it.
    backend = TorchBackend(model, device="cuda", dtype="float16")
    for upcast in (False, True, False):  # off twice: the first off warms the GPU up for both
        set_attention_upcast(model.unet.unet, upcast)
        latents, ms = run(backend, cache=True)
        compare(f"fp16 eager cache=on attention {'fp32 (export default)' if upcast else 'fp16 (SDPA)'}", latents, ms)
    set_attention_upcast(model.unet.unet, False)
    backend.close()


if __name__ == "__main__":
    main()
