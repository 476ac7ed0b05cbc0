"""``flipnet-rt export-triton``: a Triton model repository for NVIDIA's Triton container.

Layout written from an engine directory (DESIGN §4, §9)::

    REPO/
      <network>/config.pbtxt      one model per network of the manifest: onnxruntime_onnx
      <network>/1/model.onnx      (+ its external weights) or tensorrt_plan (model.plan)
      restore/config.pbtxt        Python backend: the sampling loop (ensembles cannot loop),
      restore/1/model.py          dynamic batching, queue policy; calls the networks via BLS
      restore/1/engine/           flipnet.json, manifest.json, prompts.npz
      degrade/...                 the same for the degradation mode
      README.md                   how to run it

Each network's ``config.pbtxt`` comes from its :class:`~flipnet_rt.engine.spec.NetworkSpec`:
tensor names, dtypes, dims (a dimension fixed by the optimisation profile is written as its
value, others as -1). A network whose every tensor starts with the batch symbol ``B`` gets
``max_batch_size`` and dynamic batching (concurrent BLS calls from several instances merge);
``unet`` (``2*B``) and ``unet_input`` (a ``phi`` of shape [1]) get ``max_batch_size: 0`` and
full shapes. The restore/degrade models take the inputs of ``flipnet-rt serve``
(:mod:`.protocol`: ``image``, then every optional ``[b, 1]`` input of ``OPTION_INPUTS``, the
restore model's ``fidelity`` included), so a client works against either.

**Unrun here**: no machine this was written on can run NVIDIA's container. Tested: the configs
parse with Triton's protobuf schema (tritonclient) and agree with the manifest; the copied ONNX
files load; the Restorer on the BLS backend gives the same bytes when its calls run the copied
files on ONNX Runtime.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config.options import Mode
from ..engine.artifacts import read_engine
from ..engine.manifest import MANIFEST_NAME, PROMPTS_NAME, EngineError, Manifest, NetworkEntry
from ..engine.spec import Dim, TensorSpec
from .protocol import DEFAULT_MAX_PIXELS, IMAGE_INPUT, OPTION_INPUTS, OUTPUT_NAMES
from .triton_model import ENGINE_FILES_DIR

PLATFORMS = {"onnxruntime": ("onnxruntime_onnx", "model.onnx"), "tensorrt": ("tensorrt_plan", "model.plan")}
TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "uint8": "TYPE_UINT8",
    "bytes_": "TYPE_STRING",
}
#: Networks the sampling loop calls with both guidance branches: their batch is twice the images'.
GUIDED_NETWORKS = ("unet", "unet_cond", "unet_input")
MODEL_PY = (
    "# Triton Python backend entry point, written by `flipnet-rt export-triton`: the sampling loop\n"
    "# is flipnet-rt's own (pip install flipnet-rt in the container's Python).\n"
    "from flipnet_rt.serve.triton_model import TritonPythonModel  # noqa: F401\n"
)
_BATCH = Dim(1, ("B",), 1)


@dataclass(frozen=True)
class RepositoryOptions:
    """What ``flipnet-rt export-triton`` writes; every field is a flag."""

    platform: str = "onnxruntime"  # "onnxruntime" | "tensorrt"
    max_batch: int = 8  # images per dynamic batch of restore/degrade
    max_queue_delay_ms: float = 20.0
    max_queue_size: int = 64
    instances: int = 1  # of each network model
    kind: str = "gpu"  # instance kind of the network models: "gpu" | "cpu"
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        """Checked once, when made; errors name the field (the command line shows its flag)."""
        if self.platform not in PLATFORMS:
            raise ValueError(f"platform: {self.platform}; use one of {', '.join(PLATFORMS)}")
        if self.kind not in ("gpu", "cpu"):
            raise ValueError(f"kind: {self.kind}; use gpu or cpu")
        for name in ("max_batch", "max_queue_size", "instances", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: {getattr(self, name)}; use 1 or more")
        if self.max_queue_delay_ms < 0:
            raise ValueError(f"max_queue_delay_ms: {self.max_queue_delay_ms}; use 0 or more")


def network_batch(name: str, options: RepositoryOptions) -> int:
    """Largest batch the sampling loop sends ``name`` when restore/degrade batch ``max_batch`` images."""
    return options.max_batch * (2 if name in GUIDED_NETWORKS else 1)


def batchable(entry: NetworkEntry) -> bool:
    """Every input and output starts with the batch symbol B (so Triton may batch calls)."""
    return all(t.shape and t.shape[0] == _BATCH for t in (*entry.spec.inputs, *entry.spec.outputs))


def _dims(tensor: TensorSpec, entry: NetworkEntry, skip_batch: bool) -> list[int]:
    lo, hi = entry.profile.env(0), entry.profile.env(2)
    dims = []
    for dim in tensor.shape[1:] if skip_batch else tensor.shape:
        if dim.static:
            dims.append(dim.factor)
        elif "B" not in dim.symbols and dim.value(lo) == dim.value(hi):
            dims.append(dim.value(lo))
        else:
            dims.append(-1)
    return dims


def _tensor_block(name: str, dtype: str, dims: list[int], optional: bool = False) -> str:
    extra = " optional: true" if optional else ""
    return f'  {{ name: "{name}" data_type: {TRITON_DTYPES[dtype]} dims: [ {", ".join(map(str, dims))} ]{extra} }}'


def _list(kind: str, blocks: list[str]) -> str:
    return f"{kind} [\n" + ",\n".join(blocks) + "\n]\n"


def network_config(entry: NetworkEntry, options: RepositoryOptions) -> str:
    """``config.pbtxt`` (protobuf text) of one network model."""
    platform = PLATFORMS[options.platform][0]
    batched = batchable(entry)
    text = f'name: "{entry.spec.name}"\nplatform: "{platform}"\n'
    text += f"max_batch_size: {network_batch(entry.spec.name, options) if batched else 0}\n"
    text += _list("input", [_tensor_block(t.name, t.dtype, _dims(t, entry, batched)) for t in entry.spec.inputs])
    text += _list("output", [_tensor_block(t.name, t.dtype, _dims(t, entry, batched)) for t in entry.spec.outputs])
    if batched:
        text += "dynamic_batching { }\n"
    text += f"instance_group [ {{ count: {options.instances} kind: KIND_{options.kind.upper()} }} ]\n"
    return text


def logic_config(mode: Mode, options: RepositoryOptions) -> str:
    """``config.pbtxt`` of the restore or degrade Python model (the inputs of ``flipnet-rt serve``)."""
    name = mode.value
    inputs = [_tensor_block(IMAGE_INPUT, "uint8", [-1, -1, 3])]
    inputs += [_tensor_block(o.name, o.dtype.__name__, [1], optional=True) for o in OPTION_INPUTS]
    text = f'name: "{name}"\nbackend: "python"\nmax_batch_size: {options.max_batch}\n'
    text += _list("input", inputs)
    text += _list("output", [_tensor_block(OUTPUT_NAMES[mode], "uint8", [-1, -1, 3])])
    text += (
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {int(options.max_queue_delay_ms * 1000)}\n"
        f"  default_queue_policy {{ timeout_action: REJECT max_queue_size: {options.max_queue_size} }}\n}}\n"
    )
    text += "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
    text += f'parameters {{ key: "mode" value {{ string_value: "{name}" }} }}\n'
    text += f'parameters {{ key: "max_pixels" value {{ string_value: "{options.max_pixels}" }} }}\n'
    return text


def write_repository(engine_dir: Path, out: Path, options: RepositoryOptions | None = None) -> Path:
    """Write the model repository of ``engine_dir`` to ``out`` (a new or empty folder), atomically.

    Raises:
        EngineError: the engine directory is incomplete or inconsistent, or has no TensorRT plans
            for ``platform="tensorrt"``, or its profile cannot take the batch (names the fix).
        FileExistsError: ``out`` exists and is not empty.
    """
    options = options or RepositoryOptions()
    engine_dir, out = Path(engine_dir), Path(out)
    manifest, _ = read_engine(engine_dir)
    sources = {name: _network_files(engine_dir, manifest, name, options) for name in manifest.networks}
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"-o {out}: exists and is not empty; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, entry in manifest.networks.items():
            version = tmp / name / "1"
            version.mkdir(parents=True)
            (tmp / name / "config.pbtxt").write_text(network_config(entry, options))
            for source, target in sources[name]:
                _link_or_copy(source, version / target)
        for mode in Mode:
            version = tmp / mode.value / "1"
            (version / ENGINE_FILES_DIR).mkdir(parents=True)
            (tmp / mode.value / "config.pbtxt").write_text(logic_config(mode, options))
            (version / "model.py").write_text(MODEL_PY)
            for small in (MANIFEST_NAME, PROMPTS_NAME, "flipnet.json"):
                shutil.copy2(engine_dir / small, version / ENGINE_FILES_DIR / small)
        (tmp / "README.md").write_text(_readme(manifest, options))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _network_files(
    engine_dir: Path, manifest: Manifest, name: str, options: RepositoryOptions
) -> list[tuple[Path, str]]:
    """(source, name in the version folder) of one network's files; checks the profile for TensorRT."""
    entry = manifest.networks[name]
    if options.platform == "onnxruntime":
        # external weights keep their name: the .onnx refers to them relative to itself
        extra = [(engine_dir / f, f) for f in manifest.files if f.startswith(entry.onnx + ".")]
        return [(engine_dir / entry.onnx, PLATFORMS["onnxruntime"][1]), *extra]
    trt = manifest.tensorrt
    if trt is None or name not in trt.plans:
        raise EngineError(
            f"{engine_dir}: no TensorRT plan for {name}; build them first: `flipnet-rt build {engine_dir}` "
            f"(or --platform onnxruntime)"
        )
    batch_max = entry.profile.B[2]
    if network_batch(name, options) > batch_max:
        raise EngineError(
            f"{engine_dir}: the {name} plan takes batches up to {batch_max}, --max-batch {options.max_batch} needs "
            f"{network_batch(name, options)}; lower --max-batch or rebuild with a larger profile (`flipnet-rt build`)"
        )
    return [(engine_dir / trt.plans[name], PLATFORMS["tensorrt"][1])]


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # large weights: no second copy on the same filesystem
    except OSError:
        shutil.copy2(source, target)


def _readme(manifest: Manifest, options: RepositoryOptions) -> str:
    platform = PLATFORMS[options.platform][0]
    return f"""# Triton model repository: {manifest.model_name} ({manifest.precision}, {platform})

Written by `flipnet-rt export-triton`. Models: {", ".join(manifest.networks)} (one per network,
{platform}), and `restore` / `degrade` (Python backend: flipnet-rt's sampling loop, calling the
network models through BLS). Inputs and outputs are those of `flipnet-rt serve`.

Run it with NVIDIA's Triton container, whose Python needs flipnet-rt's light runtime
(numpy, onnxruntime, Pillow; no torch):

    docker run --gpus all --rm -p 127.0.0.1:8000:8000 -p 127.0.0.1:8001:8001 -p 127.0.0.1:8002:8002 \\
      -v "$PWD":/models -v /path/to/flipnet-rt:/src nvcr.io/nvidia/tritonserver:<yy.mm>-py3 \\
      bash -c "pip install /src && tritonserver --model-repository=/models"

TensorRT plans run only with the TensorRT version and GPU they were built for (see the
manifest); use the container release that ships that TensorRT version.

This layout has not been run in the container by flipnet-rt's tests (no machine they run on can
run it): the configs are checked against Triton's protobuf schema and the manifest, and the
sampling loop over these network files is checked on ONNX Runtime.
"""
