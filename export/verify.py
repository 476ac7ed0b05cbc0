"""``flipnet-rt verify``: every available backend against PyTorch fp32 on the same inputs.

Per network: max-abs and relative L2 error (``||backend - torch|| / ||torch||``) on seeded inputs
at the profile's min shape (``unet_input`` gets the K/V that torch's ``unet_cond`` computed, so
its inputs are realistic). End to end: the PSNR between the backend's restored image and
PyTorch's for the same seed. Thresholds (fp32 / fp16), from measurements on ``random:tiny``
(fp32: about 1e-6 per network; fp16: about 1e-3) with a margin for larger models:

    per network relative L2   fp32 <= 1e-4     fp16 <= 2e-2
    end to end PSNR           fp32 >= 40 dB    fp16 >= 25 dB

Memory: PyTorch runs first (every network's reference and the end-to-end images), then the
PyTorch model is freed and ONNX Runtime runs one network session at a time without pre-packed
weight copies; the peak is the larger of the two phases, not their sum (``random:sd21-base`` needs
both a 3.5 GB UNet in PyTorch and in ONNX Runtime).
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from flipnet_rt.backends.onnxruntime import OnnxRuntimeBackend
from flipnet_rt.backends.torch import TorchBackend
from flipnet_rt.engine.manifest import Manifest, load_prompts
from flipnet_rt.engine.spec import NetworkSpec
from flipnet_rt.models import PROMPT_KINDS, load_model
from flipnet_rt.restorer import Restorer

log = logging.getLogger(__name__)

THRESHOLDS = {"fp32": {"rel_l2": 1e-4, "psnr_db": 40.0}, "fp16": {"rel_l2": 2e-2, "psnr_db": 25.0}}


@dataclass
class Check:
    backend: str
    network: str
    max_abs: float
    rel_l2: float
    limit: float
    passed: bool


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    psnr_db: dict[str, float] = field(default_factory=dict)
    psnr_limit: float = 0.0
    skipped: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks) and all(p >= self.psnr_limit for p in self.psnr_db.values())

    def lines(self) -> list[str]:
        rows = [f"{'backend':<12} {'network':<13} {'max abs':>10} {'rel L2':>10} {'limit':>8}  result"]
        for c in self.checks:
            rows.append(f"{c.backend:<12} {c.network:<13} {c.max_abs:>10.2e} {c.rel_l2:>10.2e} "
                        f"{c.limit:>8.0e}  {'ok' if c.passed else 'FAIL'}")
        for name, value in self.psnr_db.items():
            rows.append(f"{name:<12} end-to-end PSNR vs torch fp32: {value:.2f} dB "
                        f"(limit {self.psnr_limit:.0f} dB)  {'ok' if value >= self.psnr_limit else 'FAIL'}")
        rows += [f"skipped: {s}" for s in self.skipped]
        return rows


def _inputs(spec: NetworkSpec, env: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for t in spec.inputs:
        shape = t.concrete(env)
        if t.name == "timestep":
            feeds[t.name] = rng.integers(0, 1000, shape).astype(np.float32)
        elif t.name == "phi":
            feeds[t.name] = np.ones(shape, np.float32)
        else:
            feeds[t.name] = rng.standard_normal(shape, dtype=np.float32)
    return feeds


def _compare(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    ours, ref = ours.astype(np.float64), ref.astype(np.float64)
    return float(np.abs(ours - ref).max()), float(np.linalg.norm(ours - ref) / max(np.linalg.norm(ref), 1e-30))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def verify(engine_dir: Path, model_spec: str, *, images: Sequence[np.ndarray], steps: int = 4, seed: int = 0,
           networks: Sequence[str] | None = None) -> Report:
    """Compare ONNX Runtime (and TensorRT where installed) with PyTorch fp32; see the module doc."""
    manifest = Manifest.load(engine_dir)
    manifest.check_files(engine_dir)
    model = load_model(model_spec)
    manifest.check_model(model.config, engine_dir)
    limits = THRESHOLDS[manifest.precision]
    report = Report(psnr_limit=limits["psnr_db"])
    names = sorted((n for n in manifest.networks if networks is None or n in networks),
                   key=lambda n: n != "unet_cond")  # unet_cond first: its K/V feed unet_input
    end_to_end = {"vae_encoder", "vae_decoder", "face_encoder", "unet_cond", "unet_input"} <= set(manifest.networks)

    # Phase 1, PyTorch fp32: the inputs and reference outputs of every network, and the restored images.
    reference = TorchBackend(model, dtype="float32")
    cases: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
    kv_cache: dict[str, np.ndarray] = {}
    for name in names:
        entry = manifest.networks[name]
        feeds = _inputs(entry.spec, entry.profile.env(0), seed)  # the smallest profile shape bounds memory
        if name == "unet_input" and kv_cache:
            feeds.update({k: v for k, v in kv_cache.items() if k in feeds})
        with torch.inference_mode():
            ref = reference.run(name, {k: reference.from_numpy(v, "float32" if k == "timestep" else None)
                                       for k, v in feeds.items()})
        cases[name] = (feeds, {k: reference.to_numpy(v).copy() for k, v in ref.items()})
        if name == "unet_cond":
            kv_cache = cases[name][1]
        del ref
    expected, options = None, None
    if end_to_end:
        prompts = {k: model.prompt(k).float().numpy() for k in PROMPT_KINDS}
        torch_restorer = Restorer(reference, model.config, prompts)
        options = torch_restorer.options(steps=steps, seed=seed)
        expected = torch_restorer.restore(images, options)
        del torch_restorer
    config = model.config
    del reference, model
    gc.collect()

    # Phase 2, ONNX Runtime: one session at a time.
    ort_backend = OnnxRuntimeBackend(engine_dir, manifest, low_memory=True)
    for name in names:
        feeds, ref_np = cases.pop(name)
        ours = ort_backend.run(name, feeds)
        ort_backend.release(name)
        worst = max((_compare(ours[k], ref_np[k]) for k in manifest.networks[name].spec.output_names),
                    key=lambda e: e[1])
        report.checks.append(Check("onnxruntime", name, worst[0], worst[1], limits["rel_l2"],
                                   worst[1] <= limits["rel_l2"]))
    if end_to_end:
        got = Restorer(ort_backend, config, load_prompts(engine_dir)).restore(images, options)
        report.psnr_db["onnxruntime"] = min(psnr(a, b) for a, b in zip(got, expected))
    else:
        report.skipped.append("end-to-end PSNR: the engine directory lacks some networks")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        report.skipped.append("tensorrt: not installed (it cannot be installed on CPU-only machines)")
    else:
        report.skipped.append("tensorrt: plans are verified by the TensorRT backend (not part of this release)")
    return report
