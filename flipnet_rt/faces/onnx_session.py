"""A small ONNX Runtime session for the detector networks, on the restorer's device.

The detector's networks are tiny (MTCNN: 2 MB in all) and run with plain ``session.run`` on host
arrays; what they share with the restorer is the execution provider, so detection runs on the same
device (:func:`providers_like`, from the backend's ``onnx_providers``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..backends.base import Backend

log = logging.getLogger(__name__)

CPU = ("CPUExecutionProvider",)


def providers_like(backend: Backend | None) -> tuple[str, ...]:
    """The providers of a detector session beside ``backend``: its
    :attr:`~flipnet_rt.backends.base.Backend.onnx_providers`
    (ONNX Runtime's CUDA provider when it runs on it), then the CPU; the CPU alone without a backend."""
    return (*(backend.onnx_providers if backend is not None else ()), *CPU)


class OnnxNet:
    """One ONNX network with one input; ``net(x)`` returns its outputs in graph order.

    Args:
        path: the ``.onnx`` file.
        providers: ONNX Runtime execution providers, best first (missing ones are skipped).
        threads: intra-op threads (0: ONNX Runtime's default).
    """

    def __init__(self, path: Path, providers: Sequence[str] = CPU, threads: int = 0) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        available = set(ort.get_available_providers())
        usable = [p for p in providers if p in available] or list(CPU)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # no spinning, as the engine's pools (backends/onnxruntime.py): between detector calls the
        # cores belong to the engine (video: spinning detector pools took ~25 ms of CPU a frame)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=usable)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{path}: expected a network with one input, it has {len(inputs)}")
        self.input_name = inputs[0].name
        log.debug("loaded %s on %s", path, self.session.get_providers())

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
