"""A Backend whose networks are other Triton models, called through BLS (business logic scripting).

Inside the generated repository's Python model (:mod:`.triton_model`) the Restorer runs its
usual sampling loop on this backend: every ``run(network, feeds)`` becomes one Triton request to
the model of that network (ONNX Runtime or TensorRT), so the loop itself is the project's own
code, not a copy. ``execute`` is the only Triton-specific part: a function
``(network, feeds, output_names) -> outputs`` that :mod:`.triton_model` builds from
``triton_python_backend_utils``. Arrays are numpy on the host (Triton moves them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..backends.base import Array, Backend, HostArrays
from ..engine.spec import NetworkSpec

Execute = Callable[[str, Mapping[str, np.ndarray], Sequence[str]], Mapping[str, np.ndarray]]


class BLSBackend(HostArrays, Backend):
    """Run each network through ``execute`` (one Triton model per network, named as the network)."""

    name = "triton-bls"

    def __init__(self, specs: Mapping[str, NetworkSpec], execute: Execute) -> None:
        super().__init__(specs)
        self._execute = execute

    def _run(self, spec: NetworkSpec, feeds: Mapping[str, Array]) -> dict[str, Array]:
        inputs = {t.name: np.ascontiguousarray(feeds[t.name], dtype=t.dtype) for t in spec.inputs}
        outputs = self._execute(spec.name, inputs, spec.output_names)
        missing = [n for n in spec.output_names if n not in outputs]
        if missing:
            raise RuntimeError(
                f"{spec.name}: the Triton model returned no {missing}; regenerate the repository "
                f"with `flipnet-rt export-triton`"
            )
        return {n: np.asarray(outputs[n]) for n in spec.output_names}

    def close(self) -> None:
        """Nothing to free: the network models belong to Triton."""
