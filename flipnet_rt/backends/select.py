"""Choosing the backend, once: ``auto`` = TensorRT > ONNX Runtime CUDA > PyTorch CUDA > ONNX Runtime CPU.

What can run depends on what is installed, what GPU is visible and what the artifacts allow:

========================  ====================================================================
candidate                 needs
========================  ====================================================================
``tensorrt``              an engine directory with plans (``flipnet-rt build``), TensorRT, a GPU
``onnxruntime-cuda``      an engine directory, onnxruntime-gpu's CUDA provider, torch with a GPU
``torch-cuda``            a model directory or ``random:CONFIG``, torch with a GPU
``onnxruntime-cpu``       an engine directory
``torch-cpu``             a model directory or ``random:CONFIG``, torch
========================  ====================================================================

``auto`` takes the first candidate that can run; a named backend takes its own candidates (GPU
first) and, when none can run, raises :class:`BackendUnavailable` with one line naming the fix.
Probing imports nothing heavy that the answer does not need: an engine directory on a CPU-only
ONNX Runtime is chosen without importing torch (the light runtime, DESIGN §5).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..config import FlipnetConfig
from ..engine.manifest import MANIFEST_NAME, EngineError
from .base import Backend

log = logging.getLogger(__name__)

KINDS = ("auto", "tensorrt", "onnxruntime", "torch")
# auto's order: candidate -> (kind, device)
CANDIDATES = {
    "tensorrt": ("tensorrt", "cuda"),
    "onnxruntime-cuda": ("onnxruntime", "cuda"),
    "torch-cuda": ("torch", "cuda"),
    "onnxruntime-cpu": ("onnxruntime", "cpu"),
    "torch-cpu": ("torch", "cpu"),
}


class BackendUnavailable(ValueError):
    """A requested backend cannot run here; the message is one line that names the fix.

    A ValueError, as :class:`~flipnet_rt.engine.manifest.EngineError` is: the command line reports
    both as a usage error (exit status 2).
    """


@dataclass(frozen=True)
class Selection:
    """The chosen backend and what a :class:`~flipnet_rt.restorer.Restorer` needs beside it."""

    backend: Backend
    config: FlipnetConfig
    prompts: Mapping[str, np.ndarray]  # the fixed prompts' embeddings, [77, D] float32 each
    candidate: str  # a key of CANDIDATES


# ---------------------------------------------------------------------------------------- probes
# Module functions, so that tests can monkeypatch what "installed" and "visible" mean.
def tensorrt_installed() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def cuda_visible() -> bool:
    """A CUDA GPU visible to torch (imports torch; only asked when a GPU candidate needs it)."""
    if not torch_installed():
        return False
    import torch

    return torch.cuda.is_available()


def ort_providers() -> list[str]:
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def available_backends() -> list[str]:
    """The candidates this machine can run (given the artifacts they need), best first."""
    providers = ort_providers()
    gpu = cuda_visible()
    found = {
        "tensorrt": tensorrt_installed() and gpu,
        "onnxruntime-cuda": "CUDAExecutionProvider" in providers and gpu,
        "torch-cuda": gpu,
        "onnxruntime-cpu": "CPUExecutionProvider" in providers,
        "torch-cpu": torch_installed(),
    }
    return [name for name in CANDIDATES if found[name]]


# ---------------------------------------------------------------------------------------- choice
def split_model_arg(spec: str | Path) -> dict[str, Any]:
    """``--model``'s value as select_backend's keyword: an engine directory or a model."""
    text = str(spec)
    if not text.startswith("random:") and (Path(text) / MANIFEST_NAME).is_file():
        return {"engine_dir": Path(text)}
    return {"model": text}


def select_backend(kind: str = "auto", *, engine_dir: Path | str | None = None, model: Any = None,
                   device: str | None = None, dtype: str = "float32", cuda_graphs: bool = False,
                   compile: bool = False, tensorrt_provider: bool = False,
                   threads: int | None = None) -> Selection:
    """Choose and construct the backend (constructing touches no GPU; a TensorRT plan's
    compatibility with this GPU and TensorRT is checked here, so a mismatch fails at load).

    Args:
        kind: "auto", "tensorrt", "onnxruntime" or "torch".
        engine_dir: an engine directory (``flipnet-rt export``; plans from ``flipnet-rt build``).
        model: a model directory, ``random:CONFIG`` or a loaded FlipNet (torch backend).
        device: None or "auto" (the best available), "cpu", "cuda" or "cuda:N".
        dtype: the torch backend's dtype; engines run at the precision they were exported/built in.
        cuda_graphs: CUDA graph per network and shape (tensorrt, torch on CUDA; ONNX Runtime ignores it).
        compile: ``torch.compile`` the UNet networks (torch only; minutes per shape, see its docstring).
        tensorrt_provider: ONNX Runtime on CUDA puts its TensorRT provider first (builds engines at
            the first run, cached; see OnnxRuntimeCudaBackend).
        threads: ONNX Runtime CPU intra-op threads.

    Raises:
        BackendUnavailable: nothing of ``kind`` can run here; one line naming the fix.
        EngineError: the engine directory is unusable (missing files, another model, ...).
    """
    if kind not in KINDS:
        raise BackendUnavailable(f"--backend {kind}: use one of {', '.join(KINDS)}")
    if engine_dir is None and model is None:
        raise BackendUnavailable("no model: pass --model ENGINE_DIR, a model directory or random:CONFIG")
    where, index = _parse_device(device)
    candidates = [c for c, (k, d) in CANDIDATES.items() if kind in ("auto", k) and where in (None, d)]
    if not candidates:
        raise BackendUnavailable(f"--backend {kind} runs on a CUDA GPU only; drop --device {device}")
    applicable = [c for c in candidates if (engine_dir if _needs_engine(c) else model) is not None]
    if not applicable:
        raise BackendUnavailable(_wrong_artifact(kind, engine_dir, model))
    options = dict(index=index, dtype=dtype, cuda_graphs=cuda_graphs, compile=compile,
                   tensorrt_provider=tensorrt_provider, threads=threads)
    engine = _Engine(Path(engine_dir)) if any(_needs_engine(c) for c in applicable) else None
    reasons = []
    for candidate in applicable:
        reason = _why_not(candidate, engine, options)
        if reason is None:
            try:
                chosen = _construct(candidate, engine, model, options)
            except EngineError as exc:  # e.g. plans built for another GPU
                if kind != "auto":
                    raise
                reason = str(exc)
            else:
                log.info("backend: %s", candidate)
                return chosen
        log.info("backend %s cannot run: %s", candidate, reason)
        reasons.append(reason)
    # The most basic applicable candidate's reason is the one that should have worked.
    raise BackendUnavailable(reasons[-1])


def _parse_device(device: str | None) -> tuple[str | None, int]:
    if device in (None, "auto"):
        return None, 0
    kind, _, index = str(device).partition(":")
    if kind == "cpu" and not index:
        return "cpu", 0
    if kind == "cuda" and (not index or index.isdigit()):
        return "cuda", int(index or 0)
    raise BackendUnavailable(f"--device {device}: use auto, cpu, cuda or cuda:N")


def _needs_engine(candidate: str) -> bool:
    return candidate.startswith(("tensorrt", "onnxruntime"))


def _wrong_artifact(kind: str, engine_dir: Any, model: Any) -> str:
    if kind == "torch":
        return (f"--backend torch runs a model directory or random:CONFIG, not the engine directory {engine_dir} "
                f"(its weights are ONNX graphs); pass --model MODEL_DIR, or use --backend onnxruntime")
    build = " && flipnet-rt build ENGINE_DIR" if kind == "tensorrt" else ""
    return (f"--backend {kind} runs an engine directory, not the model {model}; create one: "
            f"flipnet-rt export --model {model} -o ENGINE_DIR{build}")


class _Engine:
    """An engine directory, read and checked once (manifest, files, model config, prompts)."""

    def __init__(self, directory: Path) -> None:
        from ..engine.manifest import Manifest, load_prompts

        self.directory = directory
        self.manifest = Manifest.load(directory)
        self.manifest.check_files(directory)
        self.config = FlipnetConfig.load(directory)
        self.manifest.check_model(self.config, directory)
        self.prompts = load_prompts(directory)

    def missing_plans(self) -> list[str]:
        """The networks without a plan file (all of them before ``flipnet-rt build``)."""
        plans = self.manifest.tensorrt.plans if self.manifest.tensorrt else {}
        return [n for n in self.manifest.networks if n not in plans or not (self.directory / plans[n]).is_file()]


def _why_not(candidate: str, engine: _Engine | None, options: Mapping[str, Any]) -> str | None:
    """None when ``candidate`` can run here, else one line naming the fix."""
    gpu = CANDIDATES[candidate][1] == "cuda"
    if candidate == "tensorrt":
        missing = engine.missing_plans()
        if missing:
            what = "no TensorRT plans" if len(missing) == len(engine.manifest.networks) else \
                f"no TensorRT plan for {', '.join(missing)}"
            return f"{engine.directory} has {what}; build them: flipnet-rt build {engine.directory}"
        if not tensorrt_installed():
            return ("TensorRT is not installed: pip install 'flipnet-rt[tensorrt]' (NVIDIA's index, on a machine "
                    "with an NVIDIA GPU), or use --backend onnxruntime")
    elif candidate == "onnxruntime-cuda":
        providers = ort_providers()
        wanted = "TensorrtExecutionProvider" if options["tensorrt_provider"] else "CUDAExecutionProvider"
        if wanted not in providers:
            return (f"onnxruntime has no {wanted} (it has {', '.join(providers) or 'nothing'}): pip uninstall "
                    f"onnxruntime && pip install 'flipnet-rt[gpu]', or use --device cpu")
    elif candidate == "onnxruntime-cpu":
        if "CPUExecutionProvider" not in ort_providers():
            return "onnxruntime is not installed: pip install onnxruntime"
    if candidate.startswith("torch") or gpu:
        if not torch_installed():
            what = "the torch backend needs" if candidate.startswith("torch") else f"{candidate} keeps GPU tensors in"
            return (f"{what} PyTorch, which is not installed: pip install 'flipnet-rt[torch]'"
                    + (", or export an engine directory and use --backend onnxruntime" if not gpu else
                       " (a CUDA build), or use --device cpu"))
    if gpu and not cuda_visible():
        return f"{candidate}: no CUDA GPU is visible to torch; use --device cpu"
    if options["cuda_graphs"] and not gpu:
        return "CUDA graphs need a CUDA GPU; drop --cuda-graphs or use --device cuda"
    return None


def _construct(candidate: str, engine: _Engine | None, model: Any, options: Mapping[str, Any]) -> Selection:
    index = options["index"]
    if options["compile"] and not candidate.startswith("torch"):
        log.warning("--compile applies to the torch backend only; %s ignores it", candidate)
    if candidate == "tensorrt":
        from .tensorrt import TensorRTBackend

        backend = TensorRTBackend(engine.directory, engine.manifest, cuda_graph=options["cuda_graphs"], device=index)
        backend.check_compatible()  # raises EngineError naming the rebuild
        return Selection(backend, engine.config, engine.prompts, candidate)
    if candidate.startswith("onnxruntime"):
        if candidate == "onnxruntime-cuda":
            from .onnxruntime import OnnxRuntimeCudaBackend

            if options["cuda_graphs"]:
                log.warning("--cuda-graphs: ONNX Runtime runs without CUDA graphs here")
            backend = OnnxRuntimeCudaBackend(engine.directory, engine.manifest, device=index,
                                             tensorrt_provider=options["tensorrt_provider"])
        else:
            from .onnxruntime import OnnxRuntimeBackend

            backend = OnnxRuntimeBackend(engine.directory, engine.manifest, threads=options["threads"])
        return Selection(backend, engine.config, engine.prompts, candidate)
    from ..models import PROMPT_KINDS, load_model
    from .torch import TorchBackend

    loaded = load_model(str(model)) if isinstance(model, (str, Path)) else model
    prompts = {k: loaded.prompt(k).float().cpu().numpy() for k in PROMPT_KINDS}
    device = f"cuda:{index}" if candidate == "torch-cuda" else "cpu"
    backend = TorchBackend(loaded, device=device, dtype=options["dtype"], compile=options["compile"],
                           cuda_graphs=options["cuda_graphs"])
    return Selection(backend, loaded.config, prompts, candidate)
