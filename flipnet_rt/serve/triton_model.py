"""The Python "business logic" model of the generated Triton repository (``restore``, ``degrade``).

Triton's Python backend loads ``<model>/1/model.py``, which :mod:`.repository` writes as one
line importing :class:`TritonPythonModel` from here (so the container needs ``pip install
flipnet-rt``, the light runtime: numpy, onnxruntime, Pillow). The Restorer's own sampling loop
runs on a :class:`~.bls.BLSBackend` whose every network call is a BLS request to that network's
model; requests are parsed and grouped by :mod:`.protocol` (by options and ``fidelity``) and
answered by :func:`~.protocol.model_runner`, as ``flipnet-rt serve`` does, and a refused request
gets its own error while the rest of its batch is answered.

**Unrun**: NVIDIA's Triton container cannot run on the machines this was written on;
``triton_python_backend_utils`` exists only inside it. What is tested here is everything around
it: the repository's configs, and the Restorer on a BLS backend whose calls go straight to ONNX
Runtime (tests/serve/test_repository.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config.options import Mode
from .protocol import IMAGE_INPUT, OPTION_INPUTS, RequestError, Run, model_runner, run_batch

if TYPE_CHECKING:
    from ..runtime.restorer import Restorer

log = logging.getLogger(__name__)

#: Folder, next to model.py, holding the engine's small files (flipnet.json, manifest.json, prompts.npz).
ENGINE_FILES_DIR = "engine"


def load_restorer(engine_files: Path, execute) -> Restorer:
    """A Restorer over the repository's network models: ``execute(network, feeds, outputs)`` runs one."""
    from ..engine.artifacts import open_engine
    from ..runtime.restorer import Restorer
    from .bls import BLSBackend

    # the networks are the repository's other models: only the small files are here to check
    engine = open_engine(engine_files, network_files=False)
    networks = engine.manifest.networks
    backend = BLSBackend({name: entry.spec for name, entry in networks.items()}, execute)
    cond_cache = {"unet_cond", "unet_input"} <= set(networks)  # else the joint unet
    return Restorer(backend, engine.config, engine.prompts, cond_cache=cond_cache)


class TritonPythonModel:
    """Triton's Python-backend interface: ``initialize``, ``execute``, ``finalize``."""

    def initialize(self, args: Mapping[str, str]) -> None:
        import triton_python_backend_utils as pb_utils  # only inside Triton

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.mode = Mode(params["mode"])
        self.max_pixels = int(params["max_pixels"])
        self.output = config["output"][0]["name"]
        here = Path(args["model_repository"]) / str(args["model_version"]) / ENGINE_FILES_DIR
        self.restorer: Restorer | None = load_restorer(here, self._bls)
        self.run: Run | None = model_runner(self.restorer, self.mode)  # keeps one FaceRestorer per fidelity

    def _bls(self, network: str, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        pb = self._pb
        request = pb.InferenceRequest(
            model_name=network,
            requested_output_names=list(outputs),
            inputs=[pb.Tensor(name, array) for name, array in feeds.items()],
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{network}: {response.error().message()}")
        return {name: pb.get_output_tensor_by_name(response, name).as_numpy() for name in outputs}

    def execute(self, requests: list) -> list:
        pb = self._pb
        names = [IMAGE_INPUT, *(o.name for o in OPTION_INPUTS)]
        batch = []
        for request in requests:
            tensors = {name: pb.get_input_tensor_by_name(request, name) for name in names}
            batch.append({name: t.as_numpy() for name, t in tensors.items() if t is not None})
        if self.restorer is None or self.run is None:
            raise RuntimeError("execute() after finalize()")
        answers = run_batch(batch, self.run, self.restorer.options, self.mode, max_pixels=self.max_pixels)
        responses = []
        for answer in answers:
            if isinstance(answer, RequestError):
                responses.append(pb.InferenceResponse(error=pb.TritonError(str(answer))))
            else:
                responses.append(
                    pb.InferenceResponse(output_tensors=[pb.Tensor(name, array) for name, array in answer.items()])
                )
        return responses

    def finalize(self) -> None:
        self.restorer = self.run = None
