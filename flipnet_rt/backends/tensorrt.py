"""TensorRT backend: the plans of ``flipnet-rt build``, run with ``execute_async_v3`` on one CUDA stream.

NOT RUN in this project: TensorRT cannot be installed on its CPU-only machines and none of them
has a GPU. The GPU path follows TensorRT's documented Python API (``Runtime.deserialize_cuda_engine``,
``ICudaEngine.num_io_tensors / get_tensor_name / get_tensor_mode / get_tensor_dtype``,
``IExecutionContext.set_input_shape / get_tensor_shape / set_tensor_address / execute_async_v3``)
and the pattern of TensorRT's ``demo/Diffusion`` engine wrapper; everything else (shape keys,
buffer bookkeeping, profile and manifest checks, errors) is tested on a CPU against a stand-in.

Pattern (demo/Diffusion): device memory is CuPy arrays, or torch CUDA tensors where CuPy is not
installed (:mod:`.cuda` chooses once per backend and holds every difference). Per network and concrete input
shapes there is **one execution context**, whose input shapes and buffer addresses are set once
when the shape is first seen and never change: a CUDA graph captured from it (``cuda_graph=True``,
after one warm-up run) replays against exactly the bindings it was captured with, whatever shapes
ran in between (bench batch 1 then 8, a job's short last batch). The contexts of one plan share
one activation (scratch) buffer (``USER_MANAGED`` allocation, as demo/Diffusion shares it): they
run one at a time on the backend's one stream, so a context per shape costs no device memory
beyond its I/O buffers. (TensorRT 10 lets several contexts use one optimisation profile; they
must not run concurrently, and here they never do.)

Each call copies the feeds into the context's input buffers and enqueues the plan (or replays
its graph). An input fed with an output buffer of this backend (``unet_input``'s K/V are
``unet_cond``'s outputs, DESIGN §3) is not copied: its address is bound directly. Should a later
call feed that input something else, the input gets a buffer of its own and the graph is
recaptured.

**Outputs are reused buffers**: a network's outputs for a given input shape are the same tensors
at every call, overwritten by the next call of that network with that shape. Copy one
(``array.copy()``, ``tensor.clone()``) to keep it past that. The restore loop only reads an output before the next
call of the same network, so it never copies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.manifest import EngineError, Manifest, TensorRTInfo
from ..engine.spec import NetworkSpec, Profile, ShapeKey, infer_env, shape_key
from . import fixes
from .base import Array, Backend
from .cuda import OnDevice

log = logging.getLogger(__name__)

# TensorRT DataType member names -> the specs' numpy dtype names ("bfloat16" has no numpy type).
TRT_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "INT8": "int8",
    "UINT8": "uint8",
}


# ---------------------------------------------------------------------------------------- helpers
def trt_check(result: Any, what: str, logger: Any | None = None) -> Any:
    """The one place TensorRT return codes are checked; raises naming the call.

    TensorRT's Python API reports failure by returning ``False`` (``set_input_shape``,
    ``set_tensor_address``, ``execute_async_v3``) or ``None`` (``deserialize_cuda_engine``,
    ``create_execution_context``); the reason goes to its logger, whose last error is quoted.
    CUDA calls go through CuPy or torch, which raise on their own.
    """
    if result is None or result is False:
        detail = getattr(logger, "last_error", None)
        why = f": {detail}" if detail else " (run with -v for TensorRT's log)"
        raise RuntimeError(f"TensorRT {what} failed{why}")
    return result


def check_profile(spec: NetworkSpec, env: Mapping[str, int], profile: Profile, directory: Path | str) -> None:
    """Refuse a call outside the plan's optimisation profile before TensorRT does, naming the fix."""
    for symbol in ("B", "h", "w"):
        lo, _, hi = getattr(profile, symbol)
        if symbol in env and not lo <= env[symbol] <= hi:
            what = {
                "B": "batch (--batch, x2 for UNet networks)",
                "h": "latent height (--resolution / 8)",
                "w": "latent width (--resolution / 8)",
            }[symbol]
            raise EngineError(
                f"{spec.name}: {what} {env[symbol]} is outside the plan's profile {lo}..{hi}; "
                f"rebuild with a wider range: `flipnet-rt build {directory} --batch MIN:OPT:MAX "
                f"--resolution MIN:OPT:MAX`"
            )


# ---------------------------------------------------------------------------------------- backend
@dataclass
class _Plan:
    """One deserialised plan and the activation memory its contexts share (None: each context owns its own)."""

    engine: Any
    scratch: Any = None  # uint8 device array of engine.device_memory_size_v2 bytes


@dataclass
class _Bound:
    """One (network, input shapes): its own execution context, buffers bound once, optionally a CUDA graph.

    ``inputs`` are the tensors whose addresses the context reads: buffers of its own, or, for the
    names in ``aliased``, another network's output buffers bound directly (no copy).
    """

    key: ShapeKey
    context: Any
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    aliased: set[str] = field(default_factory=set)
    graph: Any = None
    calls: int = field(default=0)


class TensorRTBackend(OnDevice, Backend):
    """Runs ``<network>.plan`` from an engine directory on CUDA device ``device``.

    Construction reads nothing but the manifest and touches no GPU; the plans' compatibility
    (``Manifest.check_tensorrt``: TensorRT version, GPU, compute capability) is checked before the
    first plan is deserialised, and each plan is deserialised on its network's first call.

    Args:
        directory: the engine directory (``manifest.json`` with a ``tensorrt`` record, ``*.plan``).
        manifest: its loaded manifest.
        cuda_graph: capture one CUDA graph per network and input shapes after one warm-up run and
            replay it afterwards. Saves the per-layer launch overhead (most for small batches);
            costs one graph (and its private memory pool) per shape, and fails for plans with
            data-dependent control flow, in which case run without it.
        device: CUDA device index.
        arrays: the device arrays' library: "auto" (CuPy when installed, else torch), "cupy" or "torch".

    Not thread-safe: the Restorer serialises calls. Every network runs on one stream.
    """

    name = "tensorrt"

    def __init__(
        self,
        directory: Path | str,
        manifest: Manifest,
        *,
        cuda_graph: bool = False,
        device: int = 0,
        arrays: str = "auto",
    ) -> None:
        if manifest.tensorrt is None:
            raise EngineError(f"{directory}: has no TensorRT plans; build them: `flipnet-rt build {directory}`")
        super().__init__({name: entry.spec for name, entry in manifest.networks.items()})
        self.directory = Path(directory)
        self.manifest = manifest
        self.cuda_graph = cuda_graph
        self.device_index = int(device)
        self.device = f"cuda:{self.device_index}"
        self.array_library = arrays
        self._plans: dict[str, _Plan] = {}
        self._bound: dict[ShapeKey, _Bound] = {}
        self._own_outputs: dict[int, Any] = {}  # id -> every bound output buffer (stable for the backend's life)
        self._stream: Any = None
        self._runtime: Any = None
        self._logger: Any = None
        self._compatible = False

    # ------------------------------------------------------------------ the device, lazily
    @staticmethod
    def _tensorrt():
        try:
            import tensorrt
        except ImportError:
            raise RuntimeError(fixes.NO_TENSORRT) from None
        return tensorrt

    def _gpu_identity(self) -> tuple[str, str]:
        """(name, "major.minor") of the device: the values `flipnet-rt build` records (cudaDeviceProp)."""
        return self.arrays.gpu_identity()

    def _new_stream(self) -> Any:
        return self.arrays.new_stream()

    def check_compatible(self) -> None:
        """Refuse plans built for another TensorRT version or GPU (EngineError naming the rebuild)."""
        if not self._compatible:
            trt = self._tensorrt()
            gpu, capability = self._gpu_identity()
            self.manifest.check_tensorrt(
                self.directory, version=trt.__version__, gpu=gpu, compute_capability=capability
            )
            self._compatible = True

    def _built(self) -> TensorRTInfo:
        """The manifest's record of the plans (``check_compatible``, run first, refuses a directory without one)."""
        built = self.manifest.tensorrt
        assert built is not None, "check_compatible() passed"
        return built

    def _plan(self, network: str) -> _Plan:
        plan = self._plans.get(network)
        if plan is not None:
            return plan
        self.check_compatible()
        trt = self._tensorrt()
        name = self._built().plans.get(network)
        if name is None:
            raise EngineError(
                f"{self.directory}: no TensorRT plan for {network}; rebuild all networks: "
                f"`flipnet-rt build {self.directory}`"
            )
        path = self.directory / name
        if not path.is_file():
            raise EngineError(f"{path}: missing; rebuild the plans: `flipnet-rt build {self.directory}`")
        if self._runtime is None:
            self._logger = _logger(trt)
            self._runtime = trt.Runtime(self._logger)
        engine = trt_check(
            self._runtime.deserialize_cuda_engine(path.read_bytes()),
            f"deserialize_cuda_engine({path.name})",
            self._logger,
        )
        self._check_io(trt, network, engine)
        plan = self._plans[network] = _Plan(engine)
        log.debug("loaded %s", path)
        return plan

    def _new_context(self, plan: _Plan, network: str) -> Any:
        """A fresh execution context of ``plan``; with TensorRT >= 10.1 its activations live in the
        plan's one scratch buffer (allocated on first use, sized for the plan's largest profile)."""
        trt = self._tensorrt()
        strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
        if strategy is None or not hasattr(plan.engine, "device_memory_size_v2"):
            return trt_check(
                plan.engine.create_execution_context(), f"{network}: create_execution_context", self._logger
            )
        context = trt_check(
            plan.engine.create_execution_context(strategy.USER_MANAGED),
            f"{network}: create_execution_context(USER_MANAGED)",
            self._logger,
        )
        if plan.scratch is None:
            size = max(int(plan.engine.device_memory_size_v2), 1)
            plan.scratch = self.arrays.empty((size,), "uint8")
        context.set_device_memory(self.arrays.pointer(plan.scratch), self.arrays.nbytes(plan.scratch))
        return context

    def _check_io(self, trt: Any, network: str, engine: Any) -> None:
        """The plan's I/O names, directions and dtypes are the manifest spec's."""
        spec = self.specs[network]
        found = {}
        for i in range(engine.num_io_tensors):
            tensor = engine.get_tensor_name(i)
            mode = "input" if engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT else "output"
            found[tensor] = (mode, TRT_DTYPES.get(engine.get_tensor_dtype(tensor).name, "?"))
        wanted = {t.name: ("input", t.dtype) for t in spec.inputs} | {t.name: ("output", t.dtype) for t in spec.outputs}
        if found != wanted:
            diff = sorted(set(found.items()) ^ set(wanted.items()))
            raise EngineError(
                f"{self.directory}/{network}.plan does not match its manifest spec ({diff}); "
                f"rebuild it: `flipnet-rt build {self.directory}`"
            )

    # ------------------------------------------------------------------ running
    def _run(self, spec: NetworkSpec, feeds: Mapping[str, Array]) -> dict[str, Array]:
        plan = self._plan(spec.name)
        key = shape_key(spec, feeds)
        if self._stream is None:
            self._stream = self._new_stream()
        with self._stream:
            bound = self._bound.get(key) or self._bind(plan, spec, key, feeds)
            for name, buffer in bound.inputs.items():
                feed = feeds[name]
                if name in bound.aliased:
                    if feed is buffer:
                        continue  # bound directly: nothing to copy
                    buffer = self._own_input(bound, spec, name)
                self.arrays.copy_into(buffer, feed)  # onto the stream; casts to the spec's dtype
            if bound.graph is not None:
                bound.graph.replay()
            else:
                trt_check(
                    bound.context.execute_async_v3(self._stream.handle), f"{spec.name}: execute_async_v3", self._logger
                )
                if self.cuda_graph:  # that run was the warm-up; its outputs are this call's result
                    bound.graph = self._capture(bound)
            bound.calls += 1
        return dict(bound.outputs)

    def _bind(self, plan: _Plan, spec: NetworkSpec, key: ShapeKey, feeds: Mapping[str, Array]) -> _Bound:
        """This shape's context and buffers (once): inputs fed with this backend's own output buffers
        are bound to them directly; the plan must agree with the spec on the output shapes."""
        shapes = dict(zip(spec.input_names, key[1]))
        env = infer_env(spec, shapes)
        recorded = self._built().profiles.get(spec.name)
        if recorded:
            check_profile(spec, env, Profile.from_dict(recorded), self.directory)
        inputs, aliased = {}, set()
        for t in spec.inputs:
            if self._own_outputs.get(id(feeds[t.name])) is feeds[t.name] and self.arrays.has_dtype(
                feeds[t.name], t.dtype
            ):
                inputs[t.name] = feeds[t.name]
                aliased.add(t.name)
            else:
                inputs[t.name] = self._empty(t.concrete(env), t.dtype)
        outputs = {t.name: self._empty(t.concrete(env), t.dtype) for t in spec.outputs}
        bound = _Bound(key, self._new_context(plan, spec.name), inputs, outputs, aliased)
        for name, tensor in inputs.items():
            trt_check(
                bound.context.set_input_shape(name, tuple(tensor.shape)),
                f"{spec.name}: set_input_shape({name}, {tuple(tensor.shape)})",
                self._logger,
            )
        for name, tensor in (*inputs.items(), *outputs.items()):
            self._set_address(bound, name, tensor)
        for name, tensor in outputs.items():
            theirs = tuple(bound.context.get_tensor_shape(name))
            if theirs != tuple(tensor.shape):
                raise EngineError(
                    f"{spec.name}: the plan computes {name} {theirs}, the manifest spec says "
                    f"{tuple(tensor.shape)}; rebuild: `flipnet-rt build {self.directory}`"
                )
        self._bound[key] = bound
        self._own_outputs.update((id(t), t) for t in outputs.values())
        log.debug("%s: context and buffers for %s (bound directly: %s)", spec.name, shapes, sorted(aliased) or "none")
        return bound

    def _own_input(self, bound: _Bound, spec: NetworkSpec, name: str) -> Any:
        """An input that was bound to another network's output now gets something else: give it a
        buffer of its own, re-point the context, and drop the graph captured with the old address."""
        tensor = self._empty(tuple(bound.inputs[name].shape), spec.input(name).dtype)
        bound.inputs[name] = tensor
        bound.aliased.discard(name)
        self._set_address(bound, name, tensor)
        bound.graph = None
        log.debug("%s: %s now has a buffer of its own", spec.name, name)
        return tensor

    def _set_address(self, bound: _Bound, name: str, tensor: Any) -> None:
        trt_check(
            bound.context.set_tensor_address(name, self.arrays.pointer(tensor)),
            f"{bound.key[0]}: set_tensor_address({name})",
            self._logger,
        )

    def _empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        return self.arrays.empty(shape, dtype)

    def _capture(self, bound: _Bound) -> Any:
        """Capture one enqueue of this shape's context as a CUDA graph (replay launches it on the stream)."""

        def enqueue() -> None:
            trt_check(
                bound.context.execute_async_v3(self._stream.handle),
                f"{bound.key[0]}: execute_async_v3 (CUDA graph capture)",
                self._logger,
            )

        try:
            graph = self._stream.capture(enqueue)
        except RuntimeError as exc:
            raise RuntimeError(f"{bound.key[0]}: CUDA graph capture failed ({exc}); run without CUDA graphs") from exc
        log.debug("%s: captured a CUDA graph for %s", *bound.key)
        return graph

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def close(self) -> None:
        """Free every shape's buffers, graphs and execution contexts, then the plans and their scratch."""
        self.synchronize()
        self._bound.clear()
        self._own_outputs.clear()
        self._plans.clear()


def _logger(trt: Any) -> Any:
    """A TensorRT ILogger that forwards to :mod:`logging` and keeps the last error for ``trt_check``."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.last_error: str | None = None

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.last_error = msg
                log.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return Logger()
