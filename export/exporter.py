"""ONNX export of every FLIPNET network into an engine directory (DESIGN §4).

Uses the torch.export-based exporter (``dynamo=True``, opset 18): it keeps one external-data file
per graph, keeps initializer names and does not merge identical tensors (freshly initialised
BoostHub projections equal attn1's; merging them would break weight refit by name). The I/O spec
of each network (:mod:`flipnet_rt.engine.spec`) names the graph's inputs and outputs and sets its
dynamic axes; the manifest records the specs, profiles, versions and file sizes and hashes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.export import Dim

from flipnet_rt.engine.manifest import Manifest, NetworkEntry, save_prompts
from flipnet_rt.engine.spec import DETECTOR, DETECTOR_PROFILE, KVSpec, NetworkSpec, Profile, network_specs
from flipnet_rt.models import PROMPT_KINDS, FlipNet
from flipnet_rt.models.boosthub import set_attention_upcast
from flipnet_rt.models.networks import NETWORKS, kv_layout, model_networks

log = logging.getLogger(__name__)

OPSET = 18
ALL_NETWORKS = tuple(NETWORKS)
DTYPES = {"fp32": (torch.float32, "float32"), "fp16": (torch.float16, "float16")}


def latent_multiple(model: FlipNet) -> int:
    """Latent sizes must be multiples of this (the UNet halves them len(blocks) - 1 times)."""
    return 2 ** (len(model.unet.unet.config["block_out_channels"]) - 1)


def _example_env(model: FlipNet) -> dict[str, int]:
    # torch.export specialises sizes 0 and 1: the example uses 2 of every symbol's unit.
    m = latent_multiple(model)
    return {"B": 2, "h": 2 * m, "w": 2 * m}


def _torch_dims(spec: NetworkSpec, model: FlipNet, max_batch: int) -> dict[str, dict[int, Dim] | None]:
    """torch.export dynamic shapes for a spec: B, h, w become Dims (h = m * hq for UNet multiples)."""
    m = latent_multiple(model) if spec.name.startswith("unet") else 1
    max_latent = 512  # 4096-pixel images; far beyond any profile, only bounds the symbolic range
    most = max(2 * max_batch, DETECTOR_PROFILE.B[2]) if spec.name == DETECTOR else 2 * max_batch
    batch = Dim("half" if spec.name == "unet" else "batch", min=1, max=most)
    hq = Dim("hq", min=1, max=max_latent // m)
    wq = Dim("wq", min=1, max=max_latent // m)
    symbols = {"B": batch, "h": m * hq if m > 1 else hq, "w": m * wq if m > 1 else wq}
    out: dict[str, dict[int, Dim] | None] = {}
    for tensor in spec.inputs:
        axes = {}
        for axis, dim in enumerate(tensor.shape):
            if dim.static:
                continue
            if dim.symbols == ("B",):
                axes[axis] = dim.factor * symbols["B"] if dim.factor > 1 else symbols["B"]
            elif len(dim.symbols) == 1:
                axes[axis] = symbols[dim.symbols[0]] * dim.factor if dim.factor > 1 else symbols[dim.symbols[0]]
            else:  # K/V lengths h*w/4^l: derived by the graph, left to torch.export
                axes[axis] = Dim.AUTO
        out[tensor.name] = axes or None
    return out


def _examples(spec: NetworkSpec, env: dict[str, int], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    tensors = []
    for t in spec.inputs:
        shape = t.concrete(env)
        if t.name == "timestep":
            value = torch.randint(0, 1000, shape, generator=g).float()
        elif t.name == "phi":
            value = torch.ones(shape)
        else:
            value = torch.randn(shape, generator=g)
        tensors.append(value.to(torch.float32 if t.dtype == "float32" else dtype))
    return tuple(tensors)


def weights_sha256(onnx_path: Path) -> str:
    """Hash of every initializer (name, dtype, dims, bytes) in name order: equal weights, equal hash."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(onnx_path), load_external_data=True)
    digest = hashlib.sha256()
    for init in sorted(proto.graph.initializer, key=lambda t: t.name):
        array = numpy_helper.to_array(init)
        digest.update(init.name.encode())
        digest.update(str(array.dtype).encode())
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def store_fp16(onnx_path: Path) -> int:
    """Store the fp32 initializers that fp16 holds exactly as fp16, each behind a ``Cast`` to fp32.

    Lossless by construction (a tensor is converted only if every value round-trips through
    fp16), so the graph computes exactly what it did; ONNX Runtime folds the casts when it loads
    the graph. It halves an engine exported from fp16 weights (the shipped demo model). Returns
    the number of tensors converted. Graphs above 2 GB are refused (this is for small models).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(str(onnx_path), load_external_data=True)
    if proto.ByteSize() > onnx.checker.MAXIMUM_PROTOBUF:
        raise ValueError(f"{onnx_path}: above 2 GB; fp16 storage is for small graphs")
    casts = []
    for init in proto.graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        half = array.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), array):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f"{name}.fp16"))
        casts.append(helper.make_node("Cast", [f"{name}.fp16"], [name], name=f"{name}.cast", to=TensorProto.FLOAT))
    nodes = list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(casts + nodes)  # before every consumer: the node list stays topologically sorted
    onnx.checker.check_model(proto)
    for stale in onnx_path.parent.glob(onnx_path.name + ".data"):
        stale.unlink()
    onnx.save(proto, str(onnx_path))
    return len(casts)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def export_network(
    model: FlipNet, name: str, spec: NetworkSpec, path: Path, *, dtype: torch.dtype, max_batch: int
) -> None:
    """Trace one network with torch.export and write ``path`` (+ ``path.data`` above 2 GB)."""
    module = NETWORKS[name](model).eval()
    examples = _examples(spec, _example_env(model), dtype)
    dims = _torch_dims(spec, model, max_batch)
    flat = tuple(dims[t.name] for t in spec.inputs)
    dynamic: tuple[dict[int, Dim] | None | tuple[dict[int, Dim] | None, ...], ...] = flat
    if name == "unet_input":  # forward(sample, timestep, context, phi, *kv)
        dynamic = (*flat[:4], flat[4:])
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            module,
            examples,
            dynamo=True,
            opset_version=OPSET,
            dynamic_shapes=dynamic,
            input_names=spec.input_names,
            output_names=spec.output_names,
            verbose=False,
        )
    assert program is not None, "dynamo=True returns the program"
    program.save(str(path))  # external data automatically above 2 GB


def export_engine(
    model: FlipNet,
    out: Path,
    *,
    precision: str = "fp32",
    resolution: int | None = None,
    max_batch: int = 4,
    networks: Sequence[str] | None = None,
    fp16_storage: bool = False,
    attention_fp32: bool | None = None,
) -> Manifest:
    """Write ONNX graphs, prompts, flipnet.json and manifest.json into ``out``.

    ``networks``: None exports every network the model has (:func:`model_networks`: the fidelity
    estimator where the model directory has one).

    ``fp16_storage``: store the weights fp16 holds exactly in fp16 (:func:`store_fp16`), fp32
    graphs only.

    ``attention_fp32``: compute every attention's scores and softmax in fp32 (Q/K/V cast up, the
    result cast back). Default (None): **on for fp16 graphs**, because unfused fp16 attention
    overflows on Stable Diffusion 2.1 (NaN images on ONNX Runtime); fp32 graphs need no casts.
    Cost: the casts around every attention, which may keep TensorRT from matching its fused
    attention kernel (which accumulates in fp32 by itself); not measured yet: the GPU check
    (benchmarks/gpu_check.sh) times torch's attention with and without the upcast at 512 px, and
    a TensorRT machine compares ``build`` of both exports. Recorded in the manifest's ``extra``.

    Files are written into a temporary folder beside ``out`` and moved in when all succeeded, so
    a failed export never leaves a half-written engine directory.
    """
    if precision not in DTYPES:
        raise ValueError(f"precision: {precision!r}; use fp32 or fp16")
    if fp16_storage and precision != "fp32":
        raise ValueError("fp16 storage applies to fp32 graphs; an fp16 export stores fp16 already")
    networks = model_networks(model) if networks is None else list(networks)
    unknown = sorted(set(networks) - set(ALL_NETWORKS))
    if unknown:
        raise ValueError(f"networks: unknown {unknown}; known: {', '.join(ALL_NETWORKS)}")
    if "fidelity" in networks and model.fidelity is None:
        raise ValueError(
            "networks: fidelity, but the model has no fidelity estimator (fidelity.safetensors); "
            "train one with `flipnet-train fidelity` or leave it out"
        )
    config = model.config
    resolution = resolution or config.resolution
    m = latent_multiple(model) * config.vae_factor
    if resolution % m:
        raise ValueError(f"resolution: {resolution} must be a multiple of {m} for this model")
    torch_dtype, np_dtype = DTYPES[precision]
    model = model.to(torch_dtype).eval().requires_grad_(False)
    # fp16 graphs compute attention in fp32 (scores and softmax) unless told otherwise: unfused fp16
    # attention overflows on Stable Diffusion 2.1; TensorRT's fused MHA accumulates in fp32 the same way.
    attention_fp32 = precision == "fp16" if attention_fp32 is None else bool(attention_fp32)
    set_attention_upcast(model.unet.unet, attention_fp32)
    kv = [KVSpec(level=layer.level, channels=layer.channels) for layer in kv_layout(model)]
    specs = network_specs(config, kv, np_dtype, fidelity=model.fidelity is not None)
    latent = resolution // config.vae_factor

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise FileExistsError(f"{out}: exists and is not an engine directory; choose another -o")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        entries = {}
        for name in networks:
            start = time.perf_counter()
            path = staging / f"{name}.onnx"
            export_network(model, name, specs[name], path, dtype=torch_dtype, max_batch=max_batch)
            if fp16_storage:
                log.info("%s: %d weight tensors stored as fp16", name, store_fp16(path))
            per_stream = 2 if name.startswith("unet") else 1  # guidance branches share the call
            profile = Profile(B=(1, per_stream, per_stream * max_batch), h=(latent,) * 3, w=(latent,) * 3)
            if name == DETECTOR:  # frames, not faces: its own range of sizes
                profile = DETECTOR_PROFILE
            entries[name] = NetworkEntry(specs[name], profile, path.name, weights_sha256(path))
            log.info("exported %s in %.1f s", name, time.perf_counter() - start)
        save_prompts(staging, {k: model.prompt(k).float().cpu().numpy() for k in PROMPT_KINDS})
        config.save(staging)
        files = {
            p.name: {"bytes": p.stat().st_size, "sha256": _file_sha256(p)}
            for p in sorted(staging.iterdir())
            if p.is_file()
        }
        manifest = Manifest(
            model_name=config.name,
            config_sha256=config.digest(),
            precision=precision,
            opset=OPSET,
            resolution=resolution,
            networks=entries,
            versions=_versions(),
            files=files,
            extra={
                "latent_multiple": latent_multiple(model),
                "fp16_storage": fp16_storage,
                "attention_fp32": attention_fp32,
            },
        )
        manifest.save(staging)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _versions() -> dict[str, str]:
    versions = {}
    for name in ("flipnet-rt", "torch", "onnx", "onnxscript", "onnxruntime", "diffusers"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
