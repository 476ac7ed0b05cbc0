"""The one-line fixes the backends name when they cannot run: written once, used everywhere.

Every message is a complete sentence fragment after ``"<what>: "``; each names the command that
fixes it (an install, a build, another flag).
"""

from __future__ import annotations

from pathlib import Path

NO_TENSORRT = (
    "TensorRT is not installed: pip install 'flipnet-rt[tensorrt]' (NVIDIA's index, on a machine "
    "with an NVIDIA GPU), or use --backend onnxruntime"
)
NO_ONNXRUNTIME = "onnxruntime is not installed: pip install onnxruntime"
NO_GPU = "no CUDA GPU is visible to torch; use --device cpu"


def no_gpu(library: str = "torch") -> str:
    """No CUDA GPU is visible to ``library`` (the one asked: torch, or CuPy where torch is absent)."""
    return NO_GPU.replace("torch", library)


NO_CUDA_GRAPHS = "CUDA graphs need a CUDA GPU; drop --cuda-graphs or use --device cuda"


def build_plans(directory: Path | str, what: str = "no TensorRT plans") -> str:
    return f"{directory} has {what}; build them: flipnet-rt build {directory}"


#: ONNX Runtime's advice for a CPU onnxruntime beside (or instead of) onnxruntime-gpu: both
#: distributions install one package directory, so remove both, then install the GPU one alone.
ORT_GPU_INSTALL = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"


def ort_provider(missing: str, available: list[str], distributions: list[str] | None = None) -> str:
    """onnxruntime lacks an execution provider: the CPU wheel, both wheels at once, or a GPU wheel
    whose provider did not load."""
    distributions = list(distributions or [])
    has = f"it has {', '.join(available) or 'nothing'}"
    if "onnxruntime" in distributions and "onnxruntime-gpu" in distributions:
        return (
            f"onnxruntime has no {missing} ({has}): onnxruntime and onnxruntime-gpu are both installed and "
            f"overwrite each other's files; {ORT_GPU_INSTALL}, or use --device cpu"
        )
    if missing == "TensorrtExecutionProvider" and "onnxruntime-gpu" in distributions:
        return (
            f"onnxruntime-gpu has no {missing} ({has}): install TensorRT beside it "
            f"(pip install 'flipnet-rt[tensorrt]'), or drop the TensorRT provider"
        )
    if "onnxruntime-gpu" in distributions:
        return cuda_libraries(missing, available)
    return f"onnxruntime has no {missing} ({has}): {ORT_GPU_INSTALL}, or use --device cpu"


def cuda_libraries(missing: str, running: list[str]) -> str:
    """onnxruntime-gpu is installed but a session could not start ``missing``."""
    return (
        f"onnxruntime-gpu could not start {missing} (a session runs on {', '.join(running) or 'nothing'}): "
        f"the CUDA/cuDNN libraries it was built for are missing or do not match (ONNX Runtime's log above "
        f"names the library); install those, or use --device cpu"
    )


def trt_provider_too_large(network: str, size: int) -> str:
    """ONNX Runtime's TensorRT provider re-serialises a graph into one protobuf (2 GB at most)."""
    return (
        f"ONNX Runtime's TensorRT provider cannot take {network} ({size / 2**30:.1f} GiB with its weights; it "
        f"re-serialises graphs into one protobuf of at most 2 GB): build native plans and use them "
        f"(flipnet-rt build ENGINE_DIR, then --backend tensorrt), export --precision fp16, or drop the "
        f"TensorRT provider"
    )


def no_torch(for_what: str, gpu: bool) -> str:
    """PyTorch is missing: for the torch backend itself, or for a GPU backend's device arrays."""
    tail = (
        " (a CUDA build), or use --device cpu"
        if gpu
        else ", or export an engine directory and use --backend onnxruntime"
    )
    return f"{for_what} PyTorch, which is not installed: pip install 'flipnet-rt[torch]'{tail}"


def no_gpu_arrays(library: str = "auto", other_installed: bool = False) -> str:
    """Neither CuPy nor torch (or not the one asked for) holds the GPU backends' device arrays."""
    if library == "torch":
        return (
            "the GPU backends' arrays were asked to be torch tensors (FLIPNET_GPU_ARRAYS=torch), but PyTorch "
            "does not import: pip install 'flipnet-rt[torch]' (a CUDA build), or unset FLIPNET_GPU_ARRAYS"
        )
    if library == "cupy":
        return (
            "the GPU backends' arrays were asked to be CuPy arrays (FLIPNET_GPU_ARRAYS=cupy), but CuPy does "
            "not import: pip install 'flipnet-rt[gpu]' (or cupy-cuda13x for a CUDA 13 stack), or unset "
            "FLIPNET_GPU_ARRAYS"
        )
    broken = " (one is installed but does not import)" if other_installed else ""
    return (
        f"the GPU backends keep device arrays in CuPy or PyTorch, and neither is installed{broken}: "
        f"pip install 'flipnet-rt[gpu]', or use --device cpu"
    )


def wrong_artifact(kind: str, engine_dir: object, model: object) -> str:
    """``--backend kind`` was given the other kind of artifact."""
    if kind == "torch":
        return (
            f"--backend torch runs a model directory or random:CONFIG, not the engine directory {engine_dir} "
            f"(its weights are ONNX graphs); pass --model MODEL_DIR, or use --backend onnxruntime"
        )
    build = " && flipnet-rt build ENGINE_DIR" if kind == "tensorrt" else ""
    return (
        f"--backend {kind} runs an engine directory, not the model {model}; create one: "
        f"flipnet-rt export --model {model} -o ENGINE_DIR{build}"
    )
