"""Choosing the backend, once: ``auto`` = TensorRT > ONNX Runtime CUDA > PyTorch CUDA > ONNX Runtime CPU.

:func:`select_backend` walks :data:`~flipnet_rt.backends.registry.REGISTRY` in ``auto``'s order
over the candidates that the request allows (``--backend``, ``--device``, the artifacts given) and
opens the first whose ``probe`` finds nothing missing. ``auto`` takes the first candidate that
can run; a named backend takes its own candidates (GPU first) and, when none can run, raises
:class:`~flipnet_rt.backends.base.BackendUnavailable` with one line naming the fix.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from ..engine.artifacts import EngineArtifacts, ModelArtifacts, open_artifacts, open_engine
from ..engine.manifest import EngineError
from . import fixes, probes
from .base import BackendUnavailable
from .registry import KINDS, REGISTRY, BackendOptions, Opened

log = logging.getLogger(__name__)

__all__ = ["BackendUnavailable", "Opened", "available_backends", "select_backend"]


def available_backends() -> list[str]:
    """The candidates this machine can run (given the artifacts they need), best first."""
    providers = probes.ort_providers()
    gpu = probes.cuda_visible()
    found = {
        "tensorrt": probes.tensorrt_installed() and gpu,
        "onnxruntime-cuda": "CUDAExecutionProvider" in providers and gpu,
        "torch-cuda": gpu,
        "onnxruntime-cpu": "CPUExecutionProvider" in providers,
        "torch-cpu": probes.torch_installed(),
    }
    return [t.name for t in REGISTRY if found[t.name]]


def select_backend(
    kind: str = "auto",
    *,
    model: Any = None,
    engine_dir: Path | str | None = None,
    device: str | None = None,
    options: BackendOptions | None = None,
) -> Opened:
    """Choose and open the backend (opening touches no GPU; a TensorRT plan's compatibility with
    this GPU and TensorRT is checked here, so a mismatch fails at load).

    Args:
        kind: "auto", "tensorrt", "onnxruntime" or "torch".
        model: what ``--model`` names: an engine directory, a model directory, ``random:CONFIG``, a
            loaded FlipNet or already opened artifacts (:mod:`flipnet_rt.engine.artifacts`).
        engine_dir: an engine directory given beside a model (both artifacts: auto picks the best).
        device: None or "auto" (the best available), "cpu", "cuda" or "cuda:N".
        options: the backend settings (:class:`~flipnet_rt.backends.registry.BackendOptions`; its
            ``device_index`` comes from ``device``).

    Raises:
        BackendUnavailable: nothing of ``kind`` can run here; one line naming the fix.
        EngineError: the engine directory is unusable (missing files, another model, ...).
    """
    if kind not in KINDS:
        raise BackendUnavailable(f"--backend {kind}: use one of {', '.join(KINDS)}")
    if engine_dir is None and model is None:
        raise BackendUnavailable("no model: pass --model ENGINE_DIR, a model directory or random:CONFIG")
    where, index = _parse_device(device)
    candidates = [t for t in REGISTRY if kind in ("auto", t.kind) and where in (None, t.device)]
    if not candidates:
        raise BackendUnavailable(f"--backend {kind} runs on a CUDA GPU only; drop --device {device}")
    given = _Given(model, engine_dir)
    applicable = [t for t in candidates if given.has(t.artifact)]
    if not applicable:
        raise BackendUnavailable(fixes.wrong_artifact(kind, given.engine_name, given.model_name))
    options = dataclasses.replace(options or BackendOptions(), device_index=index)
    if options.compile and not any(t.kind == "torch" for t in applicable):
        log.warning("--compile applies to the torch backend only; it is ignored here")
    reasons = []
    for candidate in applicable:
        artifacts = given.get(candidate.artifact)
        reason = candidate.probe(artifacts, options)
        if reason is None:
            try:
                opened = candidate.open(artifacts, options)
            except EngineError as exc:  # e.g. plans built for another GPU
                if kind != "auto":
                    raise
                reason = str(exc)
            else:
                log.info("backend: %s", candidate.name)
                return opened
        log.info("backend %s cannot run: %s", candidate.name, reason)
        reasons.append(reason)
    # The most basic applicable candidate's reason is the one that should have worked.
    raise BackendUnavailable(reasons[-1])


class _Given:
    """The artifacts of one request, each opened once and only when a candidate needs it."""

    def __init__(self, model: Any, engine_dir: Path | str | None) -> None:
        self._model: ModelArtifacts | None = None
        self._engine: EngineArtifacts | None = None
        self._engine_dir = engine_dir
        if model is not None:
            opened = open_artifacts(model)
            if isinstance(opened, EngineArtifacts):
                self._engine = opened
            else:
                self._model = opened
        self.engine_name = self._engine.directory if self._engine else engine_dir
        self.model_name = self._model.source if self._model else None

    def has(self, artifact: type) -> bool:
        if artifact is EngineArtifacts:
            return self._engine is not None or self._engine_dir is not None
        return self._model is not None

    def get(self, artifact: type) -> EngineArtifacts | ModelArtifacts:
        """The artifacts of a kind that ``has`` found."""
        if artifact is ModelArtifacts:
            assert self._model is not None, "get() after has()"
            return self._model
        if self._engine is None:
            assert self._engine_dir is not None, "get() after has()"
            self._engine = open_engine(self._engine_dir)
        return self._engine


def _parse_device(device: str | None) -> tuple[str | None, int]:
    if device in (None, "auto"):
        return None, 0
    kind, _, index = str(device).partition(":")
    if kind == "cpu" and not index:
        return "cpu", 0
    if kind == "cuda" and (not index or index.isdigit()):
        return "cuda", int(index or 0)
    raise BackendUnavailable(f"--device {device}: use auto, cpu, cuda or cuda:N")
