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
    detector's faces          boxes and landmarks within 0.5 px of PyTorch's (any precision)

The face detector (``detector``) runs on a face image scaled to a 256 x 256 frame, and what it finds
is decoded as :class:`~flipnet_rt.faces.retinaface.RetinaFaceDetector` decodes it: each face PyTorch
finds must be found by the backend with every box edge and landmark within 0.5 px (the detector's
float32 graph: torch and ONNX Runtime agree to about 1e-4 px, tests/models/test_retinaface.py).

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
from flipnet_rt.engine.spec import DETECTOR, NetworkSpec
from flipnet_rt.runtime.restorer import Restorer

log = logging.getLogger(__name__)

THRESHOLDS = {"fp32": {"rel_l2": 1e-4, "psnr_db": 40.0}, "fp16": {"rel_l2": 2e-2, "psnr_db": 25.0}}
DETECTOR_PX = 0.5  # the detector's boxes and landmarks vs PyTorch's, in frame pixels (issue 29)
DETECTOR_FRAME = 256  # the side of the frame the verify face image is scaled to for the detector


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
    detector_px: dict[str, float] = field(default_factory=dict)  # backend -> worst box/landmark difference

    @property
    def passed(self) -> bool:
        return (
            all(c.passed for c in self.checks)
            and all(p >= self.psnr_limit for p in self.psnr_db.values())
            and all(px <= DETECTOR_PX for px in self.detector_px.values())
        )

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
        for name, px in self.detector_px.items():
            rows.append(
                f"{name:<16} detector faces vs torch fp32: {px:.2e} px "
                f"(limit {DETECTOR_PX} px)  {'ok' if px <= DETECTOR_PX else 'FAIL'}"
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


def _detector_inputs(image: np.ndarray) -> dict[str, np.ndarray]:
    """The detector's feed for a face image: scaled to a ``DETECTOR_FRAME`` square frame, as the face
    pipeline prepares frames (:func:`~flipnet_rt.faces.retinaface.preprocess`)."""
    import cv2

    from flipnet_rt.faces.retinaface import preprocess

    frame = cv2.resize(np.ascontiguousarray(image), (DETECTOR_FRAME, DETECTOR_FRAME), interpolation=cv2.INTER_LINEAR)
    return {"input": preprocess([frame], None)[0]}


def detector_difference(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> float | None:
    """The worst box-edge or landmark difference (px) between the faces decoded from two runs of the
    detector on the same input; infinite when a face of ``ref`` has no counterpart (same count, same
    order); None when ``ref`` has no face (nothing to compare)."""
    from flipnet_rt.faces.retinaface import RetinaFaceDetector

    decode = RetinaFaceDetector(network=lambda x: ()).decode
    size = (DETECTOR_FRAME, DETECTOR_FRAME)
    theirs = decode(ref["loc"], ref["conf"], ref["landmarks"], size, (1.0, 1.0))[0]
    mine = decode(ours["loc"], ours["conf"], ours["landmarks"], size, (1.0, 1.0))[0]
    if not theirs:
        return None
    if len(mine) != len(theirs):
        return float("inf")
    worst = 0.0
    for a, b in zip(mine, theirs):
        worst = max(worst, float(np.abs(a.box - b.box).max()), float(np.abs(a.landmarks - b.landmarks).max()))
    return worst


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
        if name == DETECTOR and images:  # a face to find: on noise the decoded faces would be empty
            feeds = _detector_inputs(images[0])
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
        if network == DETECTOR:
            outputs = engine.manifest.networks[network].spec.output_names
            px = detector_difference({k: backend.to_numpy(ours[k]) for k in outputs}, ref_np)
            if px is None:
                report.skipped.append(f"{name} detector faces: PyTorch found no face in the verify image to compare")
            else:
                report.detector_px[name] = px
        backend.close()  # one network's session at a time bounds memory
        report.checks.append(Check(name, network, worst[0], worst[1], limits["rel_l2"], worst[1] <= limits["rel_l2"]))
