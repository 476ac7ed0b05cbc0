"""Every backend, declared once: its name, device, the artifact it runs, why it cannot run here, how to open it.

========================  ====================================================================
candidate                 needs
========================  ====================================================================
``tensorrt``              an engine directory with plans (``flipnet-rt build``), TensorRT, CuPy or torch,
                          a GPU
``onnxruntime-cuda``      an engine directory, onnxruntime-gpu's CUDA provider, CuPy or torch, a GPU
``torch-cuda``            a model directory or ``random:CONFIG``, torch with a GPU
``onnxruntime-cpu``       an engine directory
``torch-cpu``             a model directory or ``random:CONFIG``, torch
========================  ====================================================================

:data:`REGISTRY` lists them in ``auto``'s order (fastest first). ``probe`` imports nothing heavy
that its answer does not need (an engine directory on a CPU-only ONNX Runtime is judged without
importing torch: the light runtime, DESIGN §5; the GPU backends keep their device arrays in CuPy
when it is installed, so a GPU install without torch chooses them without importing torch);
``open`` imports the backend's module and constructs it, touching no GPU. What "installed" and "visible"
mean is :mod:`.probes`'s.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from ..config.model import FlipnetConfig
from ..config.precision import Precision
from ..engine.artifacts import Artifacts, EngineArtifacts, ModelArtifacts
from . import fixes, probes
from .base import Backend

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class BackendOptions:
    """What a backend is opened with; each backend reads the fields that apply to it. The one
    definition of these settings: ``Restorer.load(options=...)`` and :func:`~.select.select_backend`
    take it as it is.

    Attributes:
        device_index: the CUDA device (GPU backends); ``select_backend`` sets it from ``device``.
        precision: the torch backend's dtype (engines run at the precision they were exported/built in).
        cuda_graphs: one CUDA graph per network and shape (tensorrt, torch on CUDA).
        compile: ``torch.compile`` the UNet networks (torch; minutes per shape).
        tensorrt_provider: ONNX Runtime on CUDA puts its TensorRT provider first.
        threads: ONNX Runtime CPU intra-op threads (None: ONNX Runtime's default).
        low_memory: ONNX Runtime CPU without pre-packed weight copies or a memory arena.
    """

    device_index: int = 0
    precision: Precision = Precision.FP32
    cuda_graphs: bool = False
    compile: bool = False
    tensorrt_provider: bool = False
    threads: int | None = None
    low_memory: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision.parse(self.precision))


@dataclass(frozen=True)
class Opened:
    """An opened backend and what a Restorer needs beside it."""

    backend: Backend
    config: FlipnetConfig
    prompts: dict[str, np.ndarray]  # the fixed prompts' embeddings, [77, D] float32 each
    candidate: str


# ---------------------------------------------------------------------------------------- types
A = TypeVar("A", EngineArtifacts, ModelArtifacts)


class BackendType(ABC, Generic[A]):
    """One registry entry: a backend class's declaration, without importing it."""

    name: str  # the candidate name: "onnxruntime-cpu"
    kind: str  # what --backend calls it: "onnxruntime"
    device: str  # "cpu" | "cuda"
    artifact: type[A]  # EngineArtifacts or ModelArtifacts

    def applies(self, artifacts: Artifacts) -> bool:
        return isinstance(artifacts, self.artifact)

    def _own(self, artifacts: Artifacts) -> A:
        """``artifacts`` as this backend's kind (callers pass only artifacts it ``applies`` to)."""
        if not isinstance(artifacts, self.artifact):
            raise TypeError(f"{self.name} runs {self.artifact.__name__}, not {type(artifacts).__name__}")
        return artifacts

    def probe(self, artifacts: Artifacts, options: BackendOptions) -> str | None:
        """None when this backend can run ``artifacts`` here, else one line naming the fix."""
        reason = self._probe(self._own(artifacts), options)
        if reason is None and self.device == "cuda" and not probes.cuda_visible():
            return (
                f"{self.name}: {fixes.no_gpu('torch' if self.kind == 'torch' or probes.torch_installed() else 'CuPy')}"
            )
        if reason is None and options.cuda_graphs and self.device != "cuda":
            return fixes.NO_CUDA_GRAPHS
        return reason

    @abstractmethod
    def _probe(self, artifacts: A, options: BackendOptions) -> str | None: ...

    def open(self, artifacts: Artifacts, options: BackendOptions) -> Opened:
        """Construct the backend (no GPU touched; a plan's GPU/TensorRT match is checked here)."""
        return self._open(self._own(artifacts), options)

    @abstractmethod
    def _open(self, artifacts: A, options: BackendOptions) -> Opened: ...


#: A registry entry of either kind.
AnyBackendType = BackendType[EngineArtifacts] | BackendType[ModelArtifacts]


def _needs_torch(backend: AnyBackendType) -> str | None:
    if probes.torch_installed():
        return None
    return fixes.no_torch("the torch backend needs", backend.device == "cuda")


def _needs_gpu_arrays(backend: AnyBackendType) -> str | None:
    """The GPU backends' device arrays: CuPy (``flipnet-rt[gpu]``) or torch."""
    return None if probes.gpu_arrays_installed() else f"{backend.name}: {fixes.no_gpu_arrays()}"


class TensorRTType(BackendType[EngineArtifacts]):
    name, kind, device, artifact = "tensorrt", "tensorrt", "cuda", EngineArtifacts

    def _probe(self, artifacts: EngineArtifacts, options: BackendOptions) -> str | None:
        missing = artifacts.missing_plans()
        if missing:
            what = (
                "no TensorRT plans"
                if len(missing) == len(artifacts.manifest.networks)
                else f"no TensorRT plan for {', '.join(missing)}"
            )
            return fixes.build_plans(artifacts.directory, what)
        if not probes.tensorrt_installed():
            return fixes.NO_TENSORRT
        return _needs_gpu_arrays(self)

    def _open(self, artifacts: EngineArtifacts, options: BackendOptions) -> Opened:
        from .tensorrt import TensorRTBackend

        backend = TensorRTBackend(
            artifacts.directory, artifacts.manifest, cuda_graph=options.cuda_graphs, device=options.device_index
        )
        backend.check_compatible()  # raises EngineError naming the rebuild
        return Opened(backend, artifacts.config, artifacts.prompts, self.name)


#: Protobuf's limit on one serialised message; ONNX Runtime's TensorRT provider hits it on larger
#: graphs even with external data (microsoft/onnxruntime#15349, pykeio/ort#507).
PROTOBUF_LIMIT = 2**31 - 1


class OnnxRuntimeCudaType(BackendType[EngineArtifacts]):
    """Ready only when a created session really runs on CUDA: ``get_available_providers()`` lists
    CUDA whenever onnxruntime-gpu is installed, also when its CUDA/cuDNN libraries cannot load."""

    name, kind, device, artifact = "onnxruntime-cuda", "onnxruntime", "cuda", EngineArtifacts

    def _probe(self, artifacts: EngineArtifacts, options: BackendOptions) -> str | None:
        providers = probes.ort_providers()
        distributions = probes.ort_distributions()
        wanted = "TensorrtExecutionProvider" if options.tensorrt_provider else "CUDAExecutionProvider"
        if wanted not in providers or "CUDAExecutionProvider" not in providers:
            return fixes.ort_provider(
                wanted if wanted not in providers else "CUDAExecutionProvider", providers, distributions
            )
        if options.tensorrt_provider:
            too_large = max(((graph_bytes(artifacts, n), n) for n in artifacts.manifest.networks), default=(0, ""))
            if too_large[0] > PROTOBUF_LIMIT:
                return fixes.trt_provider_too_large(too_large[1], too_large[0])
        reason = _needs_gpu_arrays(self)
        if reason is not None or not probes.cuda_visible():
            return reason  # the base class names the missing GPU
        cuda = (("CUDAExecutionProvider", (("device_id", str(options.device_index)),)),)
        running = probes.ort_session_providers(smallest_graph(artifacts), cuda)
        if "CUDAExecutionProvider" not in running:
            reason = fixes.cuda_libraries("CUDAExecutionProvider", running)
            log.warning("%s: %s", self.name, reason)
            return reason
        if "onnxruntime" in distributions and "onnxruntime-gpu" in distributions:
            log.warning(
                "onnxruntime and onnxruntime-gpu are both installed and overwrite each other's files "
                "(onnxruntime-gpu's happen to be there now); %s",
                fixes.ORT_GPU_INSTALL,
            )
        return None

    def _open(self, artifacts: EngineArtifacts, options: BackendOptions) -> Opened:
        from .onnxruntime import OnnxRuntimeCudaBackend

        if options.cuda_graphs:
            log.warning("--cuda-graphs: ONNX Runtime runs without CUDA graphs here")
        backend = OnnxRuntimeCudaBackend(
            artifacts.directory,
            artifacts.manifest,
            device=options.device_index,
            tensorrt_provider=options.tensorrt_provider,
        )
        return Opened(backend, artifacts.config, artifacts.prompts, self.name)


def graph_bytes(artifacts: EngineArtifacts, network: str) -> int:
    """One network's ONNX graph with its external weights (``<name>.onnx`` and ``<name>.onnx.data``)."""
    onnx = artifacts.manifest.networks[network].onnx
    files = artifacts.manifest.files
    recorded = [int(info["bytes"]) for name, info in files.items() if name == onnx or name.startswith(onnx + ".")]
    if recorded:
        return sum(recorded)
    return sum(p.stat().st_size for p in artifacts.directory.glob(onnx + "*") if p.is_file())


def smallest_graph(artifacts: EngineArtifacts):
    """The engine directory's cheapest graph to open (the CUDA readiness probe's session)."""
    network = min(artifacts.manifest.networks, key=lambda n: graph_bytes(artifacts, n))
    return artifacts.directory / artifacts.manifest.networks[network].onnx


class OnnxRuntimeCpuType(BackendType[EngineArtifacts]):
    name, kind, device, artifact = "onnxruntime-cpu", "onnxruntime", "cpu", EngineArtifacts

    def _probe(self, artifacts: EngineArtifacts, options: BackendOptions) -> str | None:
        return None if "CPUExecutionProvider" in probes.ort_providers() else fixes.NO_ONNXRUNTIME

    def _open(self, artifacts: EngineArtifacts, options: BackendOptions) -> Opened:
        from .onnxruntime import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(
            artifacts.directory, artifacts.manifest, threads=options.threads, low_memory=options.low_memory
        )
        return Opened(backend, artifacts.config, artifacts.prompts, self.name)


class TorchType(BackendType[ModelArtifacts]):
    kind, artifact = "torch", ModelArtifacts

    def __init__(self, device: str) -> None:
        self.device = device
        self.name = f"torch-{device}"

    def _probe(self, artifacts: ModelArtifacts, options: BackendOptions) -> str | None:
        return _needs_torch(self)

    def _open(self, artifacts: ModelArtifacts, options: BackendOptions) -> Opened:
        from ..models import PROMPT_KINDS
        from .torch import TorchBackend

        model = artifacts.load()
        prompts = {k: model.prompt(k).float().cpu().numpy() for k in PROMPT_KINDS}
        device = f"cuda:{options.device_index}" if self.device == "cuda" else "cpu"
        backend = TorchBackend(
            model,
            device=device,
            dtype=options.precision.dtype,
            compile=options.compile,
            cuda_graphs=options.cuda_graphs,
        )
        return Opened(backend, model.config, prompts, self.name)


#: Every backend, in ``auto``'s order: the first that can run is chosen.
REGISTRY: tuple[AnyBackendType, ...] = (
    TensorRTType(),
    OnnxRuntimeCudaType(),
    TorchType("cuda"),
    OnnxRuntimeCpuType(),
    TorchType("cpu"),
)
KINDS = ("auto", *dict.fromkeys(t.kind for t in REGISTRY))
