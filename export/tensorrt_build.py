"""``flipnet-rt build``: TensorRT plans from an engine directory's ONNX graphs, with Polygraphy.

Supported: TensorRT 10.x and 11.x (``pyproject.toml``'s ``tensorrt`` extra pins ``>=10.0,<12``),
decided by the installed version (:func:`build_mode`):

- **10.x, weakly typed** (as before): an fp32 graph becomes an fp16/bf16 plan through the builder
  flags ``FP16``/``BF16`` (``--precision``); TensorRT picks each layer's precision.
- **11.x, strongly typed**: TensorRT 11 removed every weak-typing API (``BuilderFlag.FP16/BF16``;
  NVIDIA's 10.x->11.x migration guide), so a plan has the precision of its ONNX graph: an fp16 plan
  is built from an fp16 export (``flipnet-rt export --precision fp16``). ``--precision`` other than
  the graphs' is refused with that fix.

TF32: **on** for every plan where the version has ``BuilderFlag.TF32`` (Polygraphy's ``CreateConfig``
defaults it off, TensorRT's own builder on). fp32 layers then run their matrix multiplies and
convolutions on tensor cores with 10-bit mantissas (PyTorch's ``allow_tf32`` trade-off: ~1e-3
relative error, several times faster); in fp16 plans it touches only layers kept in fp32, whose
inputs are fp16 values anyway. ``tf32=False`` builds exact-fp32 plans. The choice is recorded in
the manifest's ``tensorrt`` record (``tf32``, ``strongly_typed``).

Every build failure is one line (the network, the TensorRT version, the reason, the fix); a
machine without TensorRT gets :class:`~flipnet_rt.backends.base.BackendUnavailable` (a usage
error: exit status 2).

NOT RUN against a real TensorRT in this project (its machines have none; the lent GPU machine
has none either). The version branching and Polygraphy's ``CreateConfig`` are tested against
stand-in ``tensorrt`` modules whose builder flags follow each version's API
(tests/export/test_tensorrt_build.py). Everything that does not need TensorRT (profiles, the
manifest record, the compatibility check) is tested.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flipnet_rt.backends.base import BackendUnavailable
from flipnet_rt.engine.manifest import Manifest, TensorRTInfo
from flipnet_rt.engine.spec import DETECTOR, Profile

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")
SUPPORTED_MAJORS = (10, 11)  # keep in step with pyproject.toml's tensorrt extra (tensorrt>=10.0,<12)


@dataclass(frozen=True)
class BuildMode:
    """How the installed TensorRT builds a plan: the network flag and the builder flags to set."""

    version: str
    strongly_typed: bool
    fp16: bool
    bf16: bool
    tf32: bool


def build_mode(
    version: str, precision: str, graph_precision: str, *, tf32: bool = True, has_tf32_flag: bool = True
) -> BuildMode:
    """TensorRT ``version``'s way to build a ``precision`` plan from ``graph_precision`` ONNX graphs.

    Raises:
        ValueError: a version outside 10.x-11.x, or a precision 11.x cannot build from these graphs;
            one line naming the fix.
    """
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise ValueError(f"TensorRT version {version!r} is not MAJOR.MINOR...; reinstall TensorRT") from None
    if major not in SUPPORTED_MAJORS:
        raise ValueError(
            f"TensorRT {version} is not supported (10.x and 11.x are): "
            f"pip install 'tensorrt>=10.0,<12' (NVIDIA's index), or use --backend onnxruntime"
        )
    tf32 = tf32 and has_tf32_flag
    if major >= 11:
        if precision != graph_precision:
            raise ValueError(
                f"--precision {precision}: TensorRT {version} builds plans at their ONNX graphs' precision "
                f"({graph_precision} here; 11.x has no FP16/BF16 builder flags); build with --precision "
                f"{graph_precision}, or export {precision} graphs first: flipnet-rt export --model MODEL "
                f"--precision {precision} -o ENGINE_DIR"
            )
        return BuildMode(version, strongly_typed=True, fp16=False, bf16=False, tf32=tf32)
    return BuildMode(version, strongly_typed=False, fp16=precision == "fp16", bf16=precision == "bf16", tf32=tf32)


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


def build_profiles(
    manifest: Manifest, batch: tuple[int, int, int] | None, resolution: tuple[int, int, int] | None, vae_factor: int
) -> dict[str, Profile]:
    """Each network's profile: the export's, with the user's image batch and pixel range applied.

    UNet networks take both guidance branches in one call, so their B range is twice the images'.
    The face detector keeps its own (frames, not faces: :data:`~flipnet_rt.engine.spec.DETECTOR_PROFILE`).
    """
    multiple = int(manifest.extra.get("latent_multiple", 1)) * vae_factor
    profiles = {}
    for name, entry in manifest.networks.items():
        profile = entry.profile
        if name == DETECTOR:
            profiles[name] = profile
            continue
        if batch is not None:
            k = 2 if name.startswith("unet") else 1
            profile = dataclasses.replace(profile, B=(batch[0], k * batch[1], k * batch[2]))
        if resolution is not None:
            if any(r % multiple for r in resolution):
                raise ValueError(f"--profile-resolution: {resolution} must be multiples of {multiple}")
            latent = (resolution[0] // vae_factor, resolution[1] // vae_factor, resolution[2] // vae_factor)
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


def build(
    directory: Path,
    *,
    precision: str = "fp16",
    batch: tuple[int, int, int] | None = None,
    resolution: tuple[int, int, int] | None = None,
    timing_cache: Path | None = None,
    refittable: bool = False,
    networks: Sequence[str] | None = None,
    tf32: bool = True,
) -> Manifest:
    """Build ``<network>.plan`` for every network and record the build in the manifest.

    Raises:
        BackendUnavailable: TensorRT (or Polygraphy) is not installed (a usage error, exit 2).
        ValueError: a precision or range this TensorRT cannot build (see :func:`build_mode`).
        RuntimeError: TensorRT failed to build a network; one line with its reason.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"--precision: {precision!r}; use one of {', '.join(PRECISIONS)}")
    try:
        import tensorrt as trt
        from polygraphy.backend.trt import CreateConfig, engine_from_network, network_from_onnx_path, save_engine
        from polygraphy.backend.trt import Profile as TrtProfile
    except ImportError as exc:
        missing = "TensorRT" if exc.name == "tensorrt" else f"{exc.name} (TensorRT's builder tools)"
        raise BackendUnavailable(
            f"flipnet-rt build: {missing} is not installed: pip install 'flipnet-rt[tensorrt]' "
            f"(NVIDIA's index, on a machine with an NVIDIA GPU)"
        ) from None
    from flipnet_rt.config.model import FlipnetConfig
    from flipnet_rt.engine.artifacts import read_manifest

    directory = Path(directory)
    manifest = read_manifest(directory)
    config = FlipnetConfig.load(directory)
    mode = build_mode(
        trt.__version__, precision, manifest.precision, tf32=tf32, has_tf32_flag=hasattr(trt.BuilderFlag, "TF32")
    )
    profiles = build_profiles(manifest, batch, resolution, config.vae_factor)
    gpu, capability = gpu_identity()
    plans, recorded = {}, {}
    for name in networks or list(manifest.networks):
        entry = manifest.networks[name]
        trt_profile = TrtProfile()
        for tensor, (lo, opt, hi) in entry.spec.profile_shapes(profiles[name]).items():
            trt_profile.add(tensor, min=lo, opt=opt, max=hi)
        create = CreateConfig(
            **create_config_flags(mode),
            profiles=[trt_profile],
            load_timing_cache=str(timing_cache) if timing_cache and timing_cache.exists() else None,
            refittable=refittable,
        )
        log.info(
            "building %s (%s, TensorRT %s, %s typed, TF32 %s) for %s",
            name,
            precision,
            mode.version,
            "strongly" if mode.strongly_typed else "weakly",
            "on" if mode.tf32 else "off",
            gpu,
        )
        try:
            engine = engine_from_network(
                network_from_onnx_path(str(directory / entry.onnx), strongly_typed=mode.strongly_typed),
                config=create,
                save_timing_cache=str(timing_cache) if timing_cache else None,
            )
            save_engine(engine, path=str(directory / f"{name}.plan"))
        except Exception as exc:  # Polygraphy raises PolygraphyException, TensorRT RuntimeError/TypeError
            raise RuntimeError(
                f"{name}: TensorRT {mode.version} could not build {entry.onnx}: {_one_line(exc)} "
                f"(run with -v for TensorRT's log)"
            ) from None
        plans[name] = f"{name}.plan"
        recorded[name] = profiles[name].to_dict()
    info = TensorRTInfo(
        version=trt.__version__,
        gpu=gpu,
        compute_capability=capability,
        precision=precision,
        plans=plans,
        profiles=recorded,
        strongly_typed=mode.strongly_typed,
        tf32=mode.tf32,
    )
    updated = dataclasses.replace(manifest, tensorrt=info)
    updated.save(directory)
    return updated


def create_config_flags(mode: BuildMode) -> dict[str, bool]:
    """Polygraphy ``CreateConfig``'s precision keywords for ``mode``: none that the version lacks
    (11.x: no fp16/bf16 at all, so Polygraphy never reaches for ``BuilderFlag.FP16``)."""
    flags = {"tf32": mode.tf32}
    if not mode.strongly_typed:
        flags.update(fp16=mode.fp16, bf16=mode.bf16)
    return flags


def _one_line(exc: BaseException) -> str:
    """An exception's first non-empty line (Polygraphy's and TensorRT's messages lead with the reason)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__
