"""The one-line fixes the backends name when they cannot run: written once, used everywhere.

Every message is a complete sentence fragment after ``"<what>: "``; each names the command that
fixes it (an install, a build, another flag).
"""

from __future__ import annotations

from pathlib import Path

NO_TENSORRT = ("TensorRT is not installed: pip install 'flipnet-rt[tensorrt]' (NVIDIA's index, on a machine "
               "with an NVIDIA GPU), or use --backend onnxruntime")
NO_ONNXRUNTIME = "onnxruntime is not installed: pip install onnxruntime"
NO_GPU = "no CUDA GPU is visible to torch; use --device cpu"
NO_CUDA_GRAPHS = "CUDA graphs need a CUDA GPU; drop --cuda-graphs or use --device cuda"


def build_plans(directory: Path | str, what: str = "no TensorRT plans") -> str:
    return f"{directory} has {what}; build them: flipnet-rt build {directory}"


def ort_provider(missing: str, available: list[str]) -> str:
    """onnxruntime lacks an execution provider (the CPU wheel, or onnxruntime-gpu that failed to load)."""
    extra = " with TensorRT installed" if missing == "TensorrtExecutionProvider" else ""
    return (f"onnxruntime has no {missing} (it has {', '.join(available) or 'nothing'}): pip uninstall "
            f"onnxruntime && pip install 'flipnet-rt[gpu]'{extra}, or use --device cpu")


def no_torch(for_what: str, gpu: bool) -> str:
    """PyTorch is missing: for the torch backend itself, or for a GPU backend's device arrays."""
    tail = (" (a CUDA build), or use --device cpu" if gpu else
            ", or export an engine directory and use --backend onnxruntime")
    return f"{for_what} PyTorch, which is not installed: pip install 'flipnet-rt[torch]'{tail}"


def wrong_artifact(kind: str, engine_dir: object, model: object) -> str:
    """``--backend kind`` was given the other kind of artifact."""
    if kind == "torch":
        return (f"--backend torch runs a model directory or random:CONFIG, not the engine directory {engine_dir} "
                f"(its weights are ONNX graphs); pass --model MODEL_DIR, or use --backend onnxruntime")
    build = " && flipnet-rt build ENGINE_DIR" if kind == "tensorrt" else ""
    return (f"--backend {kind} runs an engine directory, not the model {model}; create one: "
            f"flipnet-rt export --model {model} -o ENGINE_DIR{build}")
