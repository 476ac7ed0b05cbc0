"""``flipnet-rt verify``: every engine backend that can run here against PyTorch fp32 on the same inputs.

The engine backends are the registry's (:mod:`flipnet_rt.backends.registry`): ONNX Runtime CPU,
ONNX Runtime CUDA and TensorRT; each one that cannot run here is listed as skipped with its reason.

Per network: max-abs and relative L2 error (``||backend - torch|| / ||torch||``) on seeded inputs
at the profile's min shape (``unet_input`` gets the K/V that torch's ``unet_cond`` computed, so
its inputs are realistic). End to end: the PSNR between the backend's restored image and
PyTorch's for the same seed. Thresholds (fp32 / fp16), from measurements on ``random:tiny``
(fp32: about 1e-6 per network; fp16: about 1e-3) with a margin for larger models:

    per network relative L2   fp32 <= 1e-4     fp16 <= 2e-2
    end to end PSNR           fp32 >= 40 dB    fp16 >= 25 dB

Memory: PyTorch runs first (every network's reference and the end-to-end images), then the
PyTorch model is freed and each backend runs one network at a time (ONNX Runtime without pre-packed
weight copies), closing it before the next; the peak is the larger of the two phases, not their sum
(``random:sd21-base`` needs
both a 3.5 GB UNet in PyTorch and in ONNX Runtime).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from flipnet_rt.backends.base import BackendUnavailable
from flipnet_rt.backends.registry import REGISTRY, BackendOptions
from flipnet_rt.backends.select import select_backend
from flipnet_rt.engine.artifacts import EngineArtifacts, ModelArtifacts, open_engine
from flipnet_rt.engine.spec import NetworkSpec
from flipnet_rt.runtime.restorer import Restorer

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
        rows = [f"{'backend':<16} {'network':<13} {'max abs':>10} {'rel L2':>10} {'limit':>8}  result"]
        for c in self.checks:
            rows.append(
                f"{c.backend:<16} {c.network:<13} {c.max_abs:>10.2e} {c.rel_l2:>10.2e} "
                f"{c.limit:>8.0e}  {'ok' if c.passed else 'FAIL'}"
            )
        for name, value in self.psnr_db.items():
            rows.append(
                f"{name:<16} end-to-end PSNR vs torch fp32: {value:.2f} dB "
                f"(limit {self.psnr_limit:.0f} dB)  {'ok' if value >= self.psnr_limit else 'FAIL'}"
            )
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


def _fidelity_inputs(restorer: Restorer, image: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The fidelity estimator's feeds as the runtime makes them: one face at the model's resolution
    and its restoration (2 steps), ``float32 [1, 3, R, R]`` each."""
    from flipnet_rt.imaging.geometry import fit
    from flipnet_rt.imaging.tensor import to_float

    face = fit(image, restorer.config.resolution)[0]
    restored = restorer.restore([face], restorer.options(steps=2, seed=seed))[0]
    return {"image": to_float(face[None]), "restored": to_float(restored[None])}


def _compare(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    ours, ref = ours.astype(np.float64), ref.astype(np.float64)
    return float(np.abs(ours - ref).max()), float(np.linalg.norm(ours - ref) / max(np.linalg.norm(ref), 1e-30))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def verify(
    engine_dir: Path,
    model_spec: str,
    *,
    images: Sequence[np.ndarray],
    steps: int = 4,
    seed: int = 0,
    networks: Sequence[str] | None = None,
) -> Report:
    """Compare every engine backend that runs here with PyTorch fp32; see the module doc."""
    engine = open_engine(engine_dir)
    manifest = engine.manifest
    model = ModelArtifacts(model_spec)
    manifest.check_model(model.load().config, engine_dir)
    limits = THRESHOLDS[manifest.precision]
    report = Report(psnr_limit=limits["psnr_db"])
    names = sorted(
        (n for n in manifest.networks if networks is None or n in networks), key=lambda n: n != "unet_cond"
    )  # unet_cond first: its K/V feed unet_input
    end_to_end = {"vae_encoder", "vae_decoder", "face_encoder", "unet_cond", "unet_input"} <= set(manifest.networks)

    # Phase 1, PyTorch fp32: the inputs and reference outputs of every network, and the restored images.
    torch_restorer = Restorer.load(model, backend="torch", device="cpu")
    reference = torch_restorer.backend
    cases: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
    kv_cache: dict[str, np.ndarray] = {}
    for name in names:
        entry = manifest.networks[name]
        feeds = _inputs(entry.spec, entry.profile.env(0), seed)  # the smallest profile shape bounds memory
        if name == "fidelity" and images:  # a face and its restoration: noise saturates the estimator at 0
            feeds = _fidelity_inputs(torch_restorer, images[0], seed)
        if name == "unet_input" and kv_cache:
            feeds.update({k: v for k, v in kv_cache.items() if k in feeds})
        with torch.inference_mode():
            ref = reference.run(
                name, {k: reference.from_numpy(v, "float32" if k == "timestep" else None) for k, v in feeds.items()}
            )
        cases[name] = (feeds, {k: reference.to_numpy(v).copy() for k, v in ref.items()})
        if name == "unet_cond":
            kv_cache = cases[name][1]
        del ref
    expected, options = None, None
    if end_to_end:
        options = torch_restorer.options(steps=steps, seed=seed)
        expected = torch_restorer.restore(images, options)
    torch_restorer.close()
    del torch_restorer, reference, model
    gc.collect()

    # Phase 2, each engine backend that can run here: one network at a time.
    for backend_type in (t for t in REGISTRY if t.applies(engine)):
        try:  # the same choice Restorer.load makes; the networks are checked one by one, even a subset
            opened = select_backend(
                backend_type.kind, model=engine, device=backend_type.device, options=BackendOptions(low_memory=True)
            )
        except BackendUnavailable as exc:
            report.skipped.append(f"{backend_type.name}: {exc}")
            continue
        with opened.backend as backend:
            _check_backend(report, backend_type.name, backend, engine, names, cases, limits)
            if not end_to_end or expected is None:  # (expected is None exactly without end_to_end)
                report.skipped.append(f"{backend_type.name} end-to-end PSNR: the engine directory lacks some networks")
                continue
            got = Restorer(backend, engine.config, engine.prompts).restore(images, options)
            report.psnr_db[backend_type.name] = min(psnr(a, b) for a, b in zip(got, expected))
    return report


def _check_backend(
    report: Report, name: str, backend, engine: EngineArtifacts, names: Sequence[str], cases: dict, limits: dict
) -> None:
    """Each network of one backend against the PyTorch reference, closing it after each network."""
    for network in names:
        feeds, ref_np = cases[network]
        ours = backend.run(
            network, {k: backend.from_numpy(v, "float32" if k == "timestep" else None) for k, v in feeds.items()}
        )
        worst = max(
            (
                _compare(backend.to_numpy(ours[k]), ref_np[k])
                for k in engine.manifest.networks[network].spec.output_names
            ),
            key=lambda e: e[1],
        )
        backend.close()  # one network's session at a time bounds memory
        report.checks.append(Check(name, network, worst[0], worst[1], limits["rel_l2"], worst[1] <= limits["rel_l2"]))
