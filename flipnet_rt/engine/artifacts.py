"""Opening what ``--model`` names, once, for every caller: an engine directory or a model.

An **engine directory** (``flipnet-rt export``) is read and checked here and nowhere else: its
manifest, that every recorded file is present at its recorded size, the model config it was
exported from, and the prompts' embeddings. Callers that need less than :func:`open_engine`
read less, through the same checks: :func:`read_manifest` (``flipnet-rt build``) and
:func:`read_engine` (``flipnet-rt export-triton``); a copy of only the engine's small files (a
Triton repository's ``restore/1/engine/``, whose networks live in their own model folders) is
opened with ``open_engine(..., network_files=False)``. A **model** (a model directory or ``random:CONFIG``)
is loaded with PyTorch only when something uses it (a torch backend opening it, ``flipnet-rt verify``
comparing an engine with it, ``flipnet-rt bench``), so naming one costs nothing until then.
Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config.model import FlipnetConfig
from .manifest import MANIFEST_NAME, Manifest, load_prompts


@dataclass(frozen=True)
class EngineArtifacts:
    """An engine directory, read and checked (manifest, files, model config, prompts)."""

    directory: Path
    manifest: Manifest
    config: FlipnetConfig
    prompts: dict[str, np.ndarray]  # the fixed prompts' embeddings, [77, D] float32 each

    def missing_plans(self) -> list[str]:
        """The networks without a plan file (all of them before ``flipnet-rt build``)."""
        plans = self.manifest.tensorrt.plans if self.manifest.tensorrt else {}
        return [n for n in self.manifest.networks if n not in plans or not (self.directory / plans[n]).is_file()]


@dataclass
class ModelArtifacts:
    """A model directory, ``random:CONFIG`` or an already loaded ``FlipNet`` (torch backends only)."""

    source: Any  # str | Path | FlipNet
    _model: Any = field(default=None, repr=False)

    def load(self) -> Any:
        """The FlipNet (loaded with PyTorch on first call, in float32 on the CPU)."""
        if self._model is None:
            if isinstance(self.source, (str, Path)):
                from ..models import load_model

                self._model = load_model(str(self.source))
            else:
                self._model = self.source
        return self._model


Artifacts = EngineArtifacts | ModelArtifacts


def is_engine_dir(path: str | Path) -> bool:
    """Whether ``path`` is an engine directory: not ``random:...`` and holding a manifest (not read here)."""
    text = str(path)
    return not text.startswith("random:") and (Path(text) / MANIFEST_NAME).is_file()


def read_manifest(directory: str | Path, *, network_files: bool = True) -> Manifest:
    """An engine directory's manifest; with ``network_files``, every file it records checked present
    at its recorded size. Raises EngineError naming the fix."""
    directory = Path(directory)
    manifest = Manifest.load(directory)
    if network_files:
        manifest.check_files(directory)
    return manifest


def read_engine(directory: str | Path, *, network_files: bool = True) -> tuple[Manifest, FlipnetConfig]:
    """:func:`read_manifest` and the model config, checked to be the one the engine was exported from.
    Raises EngineError (or ConfigError) naming the fix."""
    directory = Path(directory)
    manifest = read_manifest(directory, network_files=network_files)
    config = FlipnetConfig.load(directory)
    manifest.check_model(config, directory)
    return manifest, config


def open_engine(directory: str | Path, *, network_files: bool = True) -> EngineArtifacts:
    """Read and check an engine directory (:func:`read_engine`, then the prompts); raises EngineError
    (or ConfigError) naming the fix. ``network_files=False`` opens a copy of the engine's small files
    only (manifest, model config, prompts), whose networks are served from elsewhere (Triton)."""
    directory = Path(directory)
    manifest, config = read_engine(directory, network_files=network_files)
    return EngineArtifacts(directory, manifest, config, load_prompts(directory))


def open_artifacts(spec: Any) -> Artifacts:
    """``--model``'s value: an engine directory (opened and checked now) or a model (loaded on use)."""
    if isinstance(spec, (EngineArtifacts, ModelArtifacts)):
        return spec
    if isinstance(spec, (str, Path)) and is_engine_dir(spec):
        return open_engine(spec)
    return ModelArtifacts(spec)
