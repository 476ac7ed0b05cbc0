"""``flipnet-rt build``: TensorRT plans from an engine directory's ONNX graphs, with Polygraphy.

NOT RUN in this project's CI or on its development machines: TensorRT cannot be installed there
(PyPI's ``tensorrt`` only fetches from NVIDIA's index). The code follows Polygraphy's documented
API (``network_from_onnx_path``, ``CreateConfig(profiles=..., load_timing_cache=...)``,
``engine_from_network(..., save_timing_cache=...)``, ``save_engine``); tests that need TensorRT
skip with that reason. Everything that does not need TensorRT (profiles, the manifest record,
the compatibility check) is tested.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

from flipnet_rt.engine.manifest import Manifest, TensorRTInfo
from flipnet_rt.engine.spec import Profile

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")


def parse_range(text: str, name: str) -> tuple[int, int, int]:
    """``"8"`` or ``"1:4:8"`` -> (min, opt, max); errors name the option."""
    parts = [p for p in str(text).split(":")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--{name}: {text!r} is not N or MIN:OPT:MAX") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise ValueError(f"--{name}: {text!r}; need MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX")
    return values[0], values[1], values[2]


def build_profiles(manifest: Manifest, batch: tuple[int, int, int] | None,
                   resolution: tuple[int, int, int] | None, vae_factor: int) -> dict[str, Profile]:
    """Each network's profile: the export's, with the user's image batch and pixel range applied.

    UNet networks take both guidance branches in one call, so their B range is twice the images'.
    """
    multiple = int(manifest.extra.get("latent_multiple", 1)) * vae_factor
    profiles = {}
    for name, entry in manifest.networks.items():
        profile = entry.profile
        if batch is not None:
            k = 2 if name.startswith("unet") else 1
            profile = dataclasses.replace(profile, B=(batch[0], k * batch[1], k * batch[2]))
        if resolution is not None:
            if any(r % multiple for r in resolution):
                raise ValueError(f"--resolution: {resolution} must be multiples of {multiple}")
            latent = tuple(r // vae_factor for r in resolution)
            profile = dataclasses.replace(profile, h=latent, w=latent)
        profiles[name] = profile
    return profiles


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of device 0, through the CUDA runtime."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    props = cuda_check(cudart.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.strip("\x00").strip(), f"{props.major}.{props.minor}"


def cuda_check(result: tuple, what: str):
    """The one place CUDA runtime return codes are checked: raise with the call's name."""
    err, *values = result
    if int(err) != 0:
        raise RuntimeError(f"{what} failed with CUDA error {int(err)} ({err})")
    return values[0] if len(values) == 1 else tuple(values)


def build(directory: Path, *, precision: str = "fp16", batch: tuple[int, int, int] | None = None,
          resolution: tuple[int, int, int] | None = None, timing_cache: Path | None = None,
          refittable: bool = False, networks: Sequence[str] | None = None) -> Manifest:
    """Build ``<network>.plan`` for every network and record the build in the manifest."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision: {precision!r}; use one of {', '.join(PRECISIONS)}")
    try:
        import tensorrt as trt
        from polygraphy.backend.trt import CreateConfig, engine_from_network, network_from_onnx_path, save_engine
        from polygraphy.backend.trt import Profile as TrtProfile
    except ImportError as exc:
        raise RuntimeError(
            f"TensorRT is not installed ({exc.name}): pip install 'flipnet-rt[tensorrt]' from NVIDIA's index "
            f"on a machine with an NVIDIA GPU"
        ) from None
    from flipnet_rt.config import FlipnetConfig

    directory = Path(directory)
    manifest = Manifest.load(directory)
    manifest.check_files(directory)
    config = FlipnetConfig.load(directory)
    profiles = build_profiles(manifest, batch, resolution, config.vae_factor)
    gpu, capability = gpu_identity()
    plans, recorded = {}, {}
    for name in networks or list(manifest.networks):
        entry = manifest.networks[name]
        trt_profile = TrtProfile()
        for tensor, (lo, opt, hi) in entry.spec.profile_shapes(profiles[name]).items():
            trt_profile.add(tensor, min=lo, opt=opt, max=hi)
        create = CreateConfig(
            fp16=precision == "fp16", bf16=precision == "bf16", profiles=[trt_profile],
            load_timing_cache=str(timing_cache) if timing_cache and timing_cache.exists() else None,
            refittable=refittable,
        )
        log.info("building %s (%s) for %s", name, precision, gpu)
        engine = engine_from_network(
            network_from_onnx_path(str(directory / entry.onnx)), config=create,
            save_timing_cache=str(timing_cache) if timing_cache else None,
        )
        plan = f"{name}.plan"
        save_engine(engine, path=str(directory / plan))
        plans[name] = plan
        recorded[name] = profiles[name].to_dict()
    info = TensorRTInfo(version=trt.__version__, gpu=gpu, compute_capability=capability, precision=precision,
                        plans=plans, profiles=recorded)
    updated = dataclasses.replace(manifest, tensorrt=info)
    updated.save(directory)
    return updated
