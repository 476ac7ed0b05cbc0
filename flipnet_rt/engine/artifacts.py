"""Opening what ``--model`` names, once, for every caller: an engine directory or a model.

An **engine directory** (``flipnet-rt export``) is read and checked here and nowhere else: its
manifest, that every recorded file is present at its recorded size, the model config it was
exported from, and the prompts' embeddings. A **model** (a model directory or ``random:CONFIG``)
is loaded with PyTorch only when a torch backend opens it, so naming one costs nothing.
Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FlipnetConfig
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
    text = str(path)
    return not text.startswith("random:") and (Path(text) / MANIFEST_NAME).is_file()


def open_engine(directory: str | Path) -> EngineArtifacts:
    """Read and check an engine directory; raises EngineError (or ConfigError) naming the fix."""
    directory = Path(directory)
    manifest = Manifest.load(directory)
    manifest.check_files(directory)
    config = FlipnetConfig.load(directory)
    manifest.check_model(config, directory)
    return EngineArtifacts(directory, manifest, config, load_prompts(directory))


def open_artifacts(spec: Any) -> Artifacts:
    """``--model``'s value: an engine directory (opened and checked now) or a model (loaded on use)."""
    if isinstance(spec, (EngineArtifacts, ModelArtifacts)):
        return spec
    if isinstance(spec, (str, Path)) and is_engine_dir(spec):
        return open_engine(spec)
    return ModelArtifacts(spec)
