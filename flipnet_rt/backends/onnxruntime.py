"""ONNX Runtime backend: the default, CPU everywhere (CUDA/TensorRT providers where installed)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..engine.manifest import Manifest
from ..engine.spec import NetworkSpec
from .base import Array, Backend

log = logging.getLogger(__name__)


class OnnxRuntimeBackend(Backend):
    """Sessions over an engine directory's ``*.onnx``, created on first use of each network."""

    name = "onnxruntime"

    def __init__(self, directory: Path, manifest: Manifest, providers: Sequence[str] = ("CPUExecutionProvider",),
                 threads: int | None = None) -> None:
        super().__init__({name: entry.spec for name, entry in manifest.networks.items()})
        self.directory = Path(directory)
        self.manifest = manifest
        self.providers = list(providers)
        self.threads = threads
        self._sessions: dict[str, object] = {}
        self._lock = threading.Lock()

    def session(self, network: str):
        with self._lock:
            if network not in self._sessions:
                import onnxruntime as ort

                options = ort.SessionOptions()
                if self.threads:
                    options.intra_op_num_threads = self.threads
                path = self.directory / self.manifest.networks[network].onnx
                self._sessions[network] = ort.InferenceSession(str(path), options, providers=self.providers)
                log.debug("loaded %s with %s", path, self.providers)
            return self._sessions[network]

    def _run(self, spec: NetworkSpec, feeds: Mapping[str, Array]) -> dict[str, Array]:
        inputs = {t.name: np.ascontiguousarray(feeds[t.name], dtype=t.dtype) for t in spec.inputs}
        outputs = self.session(spec.name).run(spec.output_names, inputs)
        return dict(zip(spec.output_names, outputs))

    def from_numpy(self, array: np.ndarray, dtype: str | None = None) -> np.ndarray:
        # Host arithmetic (the sampler) stays float32; feeds are cast to the graph's dtype in _run.
        if array.dtype.kind == "f":
            return array.astype(dtype or np.float32, copy=False)
        return array

    def to_numpy(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array)

    def concat(self, arrays: Sequence[np.ndarray], axis: int = 0) -> np.ndarray:
        return np.concatenate(arrays, axis=axis)
