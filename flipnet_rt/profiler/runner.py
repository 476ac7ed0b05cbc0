"""``flipnet-rt bench``: the configuration matrix, timed stage by stage, in one process and one run.

For each configuration (batch x condition cache x CUDA graph) the Restorer runs ``warmup``
untimed calls, then ``iters`` timed calls; every stage is timed by :class:`StageTimer` (device
synchronised on a GPU) and medians are reported. Ratios between configurations of one run are
the numbers to trust on a noisy machine.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.profiling import StageTimer
from ..runtime.restorer import Restorer

STAGES = (
    "preprocessing",
    "vae_encoder",
    "face_encoder",
    "unet_cond",
    "unet_step",
    "sampler_update",
    "vae_decoder",
    "postprocessing",
)


@dataclass(frozen=True)
class BenchConfig:
    batch: int
    cond_cache: bool
    cuda_graph: bool = False
    compile: bool = False
    backend: str = ""  # named in the label when one run measures several backends

    @property
    def label(self) -> str:
        cache = "on" if self.cond_cache else "off"
        return (
            (f"{self.backend} " if self.backend else "")
            + f"b{self.batch} cache={cache}"
            + (" compile" if self.compile else "")
            + (" graph" if self.cuda_graph else "")
        )


@dataclass
class BenchResult:
    config: BenchConfig
    stages_ms: dict[str, float]  # median per call; unet_step and sampler_update per step
    e2e_ms: dict[str, float]  # p50 / p90 / p99
    images_per_s: float
    overhead_ms: float  # e2e p50 minus the sum of the stages (noise, q_sample, context building)
    peak_host_mib: float
    peak_gpu_mib: float | None
    tflops: float | None = None  # achieved, from counted FLOPs
    peak_fraction: float | None = None  # of the matmul peak measured in the same run
    speedup_vs_baseline: float | None = None
    notes: list[str] = field(default_factory=list)


def environment(backend: str, precision: str) -> dict[str, str]:
    """What produced the numbers: machine, versions, commit."""
    import importlib.metadata as md

    env = {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "backend": backend,
        "precision": precision,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    for pkg in ("flipnet-rt", "numpy", "onnxruntime", "torch", "diffusers", "tensorrt"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        env["commit"] = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        env["commit"] = "unknown"
    try:
        import torch

        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def reset_peak_host() -> None:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5), so each config gets its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_host_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _gpu_hooks(restorer: Restorer) -> tuple[Callable[[], None], Callable[[], float | None]]:
    """The backend's device barrier, and the peak GPU memory (None without a torch-visible GPU)."""
    sync = restorer.backend.synchronize
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            return sync, lambda: torch.cuda.max_memory_allocated() / 2**20
    return sync, lambda: None


def run_config(
    restorer: Restorer,
    images: Sequence[np.ndarray],
    config: BenchConfig,
    *,
    steps: int,
    warmup: int,
    iters: int,
    guidance: float | None = None,
) -> BenchResult:
    options = restorer.options(steps=steps, guidance=guidance, seed=0)
    batch = list(images[: config.batch])
    if len(batch) < config.batch:
        batch = (batch * config.batch)[: config.batch]
    sync, gpu_peak = _gpu_hooks(restorer)
    timer = StageTimer(sync)
    restorer = restorer.variant(cond_cache=config.cond_cache)  # same backend, no reload
    timed = restorer.variant(timer=timer)
    reset_peak_host()
    for _ in range(warmup):
        restorer.restore(batch, options)
    per_call: dict[str, list[float]] = {s: [] for s in STAGES}
    e2e: list[float] = []
    stage_sums: list[float] = []
    for _ in range(iters):
        timer.reset()
        sync()
        start = time.perf_counter()
        timed.restore(batch, options)
        sync()
        e2e.append(time.perf_counter() - start)
        rec = timer.records
        unet = rec.get("unet_input" if config.cond_cache else "unet", [])
        n_steps = max(len(unet), 1)
        sampling = sum(rec.get("sampling", [0.0]))
        values = {
            "preprocessing": sum(rec.get("preprocessing", [0.0])),
            "vae_encoder": sum(rec.get("vae_encoder", [0.0])),
            "face_encoder": sum(rec.get("face_encoder", [0.0])),
            "unet_cond": sum(rec.get("unet_cond", [0.0])),
            "unet_step": float(np.median(unet)) if unet else 0.0,
            "sampler_update": (sampling - sum(unet)) / n_steps,
            "vae_decoder": sum(rec.get("vae_decoder", [0.0])),
            "postprocessing": sum(rec.get("postprocessing", [0.0])),
        }
        for stage, value in values.items():
            per_call[stage].append(value)
        stage_sums.append(sum(v for k, v in values.items() if k not in ("unet_step", "sampler_update")) + sampling)
    p50 = float(np.percentile(e2e, 50))
    return BenchResult(
        config=config,
        stages_ms={s: 1e3 * float(np.median(v)) for s, v in per_call.items()},
        e2e_ms={q: 1e3 * float(np.percentile(e2e, int(q[1:]))) for q in ("p50", "p90", "p99")},
        images_per_s=config.batch / p50,
        overhead_ms=1e3 * float(np.median(np.array(e2e) - np.array(stage_sums))),
        peak_host_mib=peak_host_mib(),
        peak_gpu_mib=gpu_peak(),
    )


def with_flops(result: BenchResult, flops_per_image: float | None, peak_tflops: float | None) -> BenchResult:
    if not flops_per_image:
        return result
    achieved = flops_per_image * result.images_per_s / 1e12
    fraction = achieved / peak_tflops if peak_tflops else None
    return dataclasses.replace(result, tflops=achieved, peak_fraction=fraction)


def result_record(result: BenchResult, env: dict[str, str], model: str, steps: int) -> dict[str, Any]:
    record = dataclasses.asdict(result)
    record["config"] = {**dataclasses.asdict(result.config), "label": result.config.label}
    record.update(model=model, steps=steps, environment=env)
    return record
