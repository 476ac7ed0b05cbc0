"""``flipnet-rt serve``: the Restorer behind NVIDIA Triton Inference Server, through PyTriton.

Triton (the ``tritonserver`` binary PyTriton bundles) speaks the KServe v2 protocol over HTTP and
gRPC, serves health (``/v2/health/ready``) and Prometheus metrics (``/metrics``), queues requests
and forms dynamic batches; PyTriton hands each batch to :func:`~.protocol.run_batch`, which makes
one Restorer call per group of equal options and fidelity. Three models:

* ``restore``: ``image`` ``uint8 [b, H, W, 3]`` aligned face crops (+ optional ``seed``, sampling
  options, ``fidelity`` ``float32 [b, 1]`` in [0, 1], absent: auto) -> ``restored``
  ``uint8 [b, H, W, 3]``;
* ``degrade``: the same inputs less ``fidelity`` (refused) -> ``degraded``;
* ``restore_image``: whole images, the inputs of ``restore`` -> ``restored`` (every face).

Triton batches only requests whose inputs have equal shapes, so crops of one size batch together.
HTTP goes through :mod:`.gateway` first (every request checked before Triton sees it, client
errors 4xx with one line, idle connections closed); gRPC goes to Triton directly.
Queue limit: a request arriving when ``max_queue_size`` requests already wait is rejected at once
(Triton's dynamic batcher ``default_queue_policy``), never left to hang. Every port binds to
``host`` (loopback by default; Triton's own HTTP port behind the gateway to loopback always).
SIGTERM or SIGINT: Triton stops taking requests, waits up to ``exit_timeout_s`` for those in
flight, and the process exits. A model whose stub process dies (:mod:`.watchdog`): readiness 503
at once, Triton is stopped and :func:`serve` raises :class:`ModelDown` (exit status 3).

PyTriton needs numpy<2: install it in its own environment (``make serve``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config.options import Mode
from ..faces.fidelity import AUTO
from .protocol import (
    DEFAULT_MAX_PIXELS,
    FACE_RESTORER_CACHE,
    IMAGE_INPUT,
    OPTION_INPUTS,
    OUTPUT_NAMES,
    Fidelity,
    RequestError,
    Run,
    model_runner,
    run_batch,
)

if TYPE_CHECKING:
    from ..config.options import SamplingOptions
    from ..faces.types import FaceDetector
    from ..runtime.restorer import Restorer

log = logging.getLogger(__name__)

MODELS = {"restore": Mode.RESTORE, "degrade": Mode.DEGRADE}
#: Whole images (any size, any number of faces): detect, align, restore every face, paste back
#: (:class:`flipnet_rt.faces.pipeline.FaceRestorer`); output ``restored`` of the input's size.
WHOLE_IMAGE_MODEL = "restore_image"
#: Triton APIs that need PyTriton's access token (its defaults less ``statistics``).
RESTRICTED_ENDPOINTS = ("shared-memory", "model-repository", "trace", "logging")
#: How often the serving loop checks that Triton is alive (and wakes for SIGTERM).
MONITOR_PERIOD_S = 0.5


@dataclass(frozen=True)
class ServeConfig:
    """What ``flipnet-rt serve`` runs; every field is a command-line flag."""

    model: str
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8
    max_queue_delay_ms: float = 20.0
    max_queue_size: int = 64
    instances: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS
    backend: str = "auto"
    device: str | None = None
    exit_timeout_s: int = 20
    idle_timeout_s: float = 30.0
    request_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        """Checked once, when made: errors name the field (``max_batch: 0; ...``); the command line
        shows its flag."""
        for name in ("max_batch", "instances", "max_queue_size", "max_pixels", "exit_timeout_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: {getattr(self, name)}; use 1 or more")
        for name in ("idle_timeout_s", "request_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: {getattr(self, name)}; use a number of seconds > 0")
        if self.max_queue_delay_ms < 0:
            raise ValueError(f"max_queue_delay_ms: {self.max_queue_delay_ms}; use 0 or more")
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        if len(set(ports)) != 3 or not all(0 < p < 65536 for p in ports):
            raise ValueError(f"ports {ports}: give three different ports in 1..65535")


def python_libdir_env() -> dict[str, str]:
    """``LD_LIBRARY_PATH`` with this interpreter's lib directory first.

    PyTriton's Python-backend stub links ``libpython``; with an interpreter built elsewhere than
    the system's (pyenv, conda) it otherwise loads the wrong one and dies with an ``RLock ...
    _recursion_count`` error.
    """
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if not libdir or libdir in current.split(":"):
        return {}
    return {"LD_LIBRARY_PATH": f"{libdir}:{current}" if current else libdir}


def triton_tensors(mode: Mode) -> tuple[list[Any], list[Any]]:
    """PyTriton input and output :class:`Tensor` lists of one model (shapes without the batch axis)."""
    from pytriton.model_config import Tensor

    inputs = [Tensor(name=IMAGE_INPUT, dtype=np.uint8, shape=(-1, -1, 3))]
    inputs += [Tensor(name=o.name, dtype=o.dtype, shape=(1,), optional=True) for o in OPTION_INPUTS]
    return inputs, [Tensor(name=OUTPUT_NAMES[mode], dtype=np.uint8, shape=(-1, -1, 3))]


def model_config(config: ServeConfig) -> Any:
    """Dynamic batching into ``max_batch`` images with a bounded queue that rejects at once."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, TimeoutAction

    policy = QueuePolicy(timeout_action=TimeoutAction.REJECT, max_queue_size=config.max_queue_size)
    batcher = DynamicBatcher(
        max_queue_delay_microseconds=int(config.max_queue_delay_ms * 1000), default_queue_policy=policy
    )
    return ModelConfig(max_batch_size=config.max_batch, batcher=batcher)


def whole_image_runner(restorer: Restorer, detector: FaceDetector) -> Run:
    """``(images, options, seeds, fidelity) -> images``: every face of each whole image
    (``uint8 [H, W, 3]``, any size) restored and pasted back, the same bytes as
    ``FaceRestorer(restorer, detector, FaceOptions(fidelity=fidelity), sampling=options).restore_image(image, seed)``.
    One FaceRestorer per distinct (options, fidelity), the last ``FACE_RESTORER_CACHE`` kept
    (the detector is shared)."""
    from ..faces.pipeline import FaceOptions, FaceRestorer

    @functools.lru_cache(maxsize=FACE_RESTORER_CACHE)
    def faces(options: SamplingOptions, fidelity: Fidelity) -> FaceRestorer:
        return FaceRestorer(restorer, detector, FaceOptions(fidelity=fidelity), sampling=options)

    def run(
        images: list[np.ndarray], options: SamplingOptions, seeds: list[int], fidelity: Fidelity = AUTO
    ) -> list[np.ndarray]:
        return [image for image, _ in faces(options, fidelity).restore_images(images, seeds)]

    return run


def infer_function(
    restorer: Restorer, mode: Mode, max_pixels: int, run: Run | None = None
) -> Callable[[list], list[dict[str, np.ndarray]]]:
    """The PyTriton inference callable of one model instance: a batch of requests -> responses.
    ``run``: what answers a group of images (default: :func:`~.protocol.model_runner`, aligned crops
    with their fidelity for restore, the Restorer's ``degrade`` for degrade)."""
    if run is None:
        run = model_runner(restorer, mode)

    def infer(requests: list) -> list[dict[str, np.ndarray]]:
        try:
            answers = run_batch([dict(r.data) for r in requests], run, restorer.options, mode, max_pixels=max_pixels)
        except Exception:
            log.exception("%s: inference failed", mode.value)
            raise
        refused = [(i, a) for i, a in enumerate(answers) if isinstance(a, RequestError)]
        if refused:
            # PyTriton answers a batch as a whole (one error or every response): the valid requests
            # of a batch holding a refused one fail with it. Triton batches only requests of equal
            # input shapes, so an oversized image shares no batch with valid ones.
            log.info("%s: refused: %s", mode.value, "; ".join(str(a) for _, a in refused))
            raise RequestError(
                str(refused[0][1])
                if len(requests) == 1
                else "; ".join(f"request {i + 1} of {len(requests)} in this batch: {a}" for i, a in refused)
            )
        return answers  # type: ignore[return-value]

    return infer


class ModelDown(RuntimeError):
    """A model's stub process died while serving: the server stopped; its supervisor restarts it."""


def serve(config: ServeConfig, *, on_ready: Callable[[], None] | None = None) -> None:
    """Load ``config.model`` (one Restorer per instance), serve until SIGTERM/SIGINT, then stop.

    HTTP clients talk to the :class:`~.gateway.Gateway` on ``config.http_port``, which checks each
    request and forwards it to Triton's own HTTP port (loopback, a free port). A model whose stub
    process dies marks readiness 503 at once and stops the server: :class:`ModelDown` is raised
    (exit status 3 from the CLI) for a supervisor to restart it. On every exit PyTriton's shared
    memory in ``/dev/shm`` is released.

    Raises:
        ModelDown: a model's stub process died.
    """
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    from ..runtime.restorer import Restorer
    from .gateway import Gateway, Health, Limits
    from .watchdog import StubWatchdog, descendants, release_shared_memory, stubs

    os.environ.update(python_libdir_env())
    restorers = [
        Restorer.load(config.model, backend=config.backend, device=config.device) for _ in range(config.instances)
    ]
    from ..faces.detectors import load_detector
    from ..faces.onnx_session import providers_like

    # the default detector, on each instance's backend (the engine's own detector network where it has one)
    detectors = [load_detector(providers=providers_like(r.backend), network=r.detector_network()) for r in restorers]
    log.info("loaded %s on %s (%d instance(s))", config.model, restorers[0].backend.name, config.instances)
    upstream_port = _free_port()
    triton_config = TritonConfig(
        http_address="127.0.0.1",
        http_port=upstream_port,
        grpc_address=config.host,
        grpc_port=config.grpc_port,
        metrics_address=config.host,
        metrics_port=config.metrics_port,
        exit_timeout_secs=config.exit_timeout_s,
    )
    # PyTriton guards Triton's admin APIs with a token; statistics (the batch sizes each model ran)
    # are read-only and what operators and benchmarks/serve_load.py read, so they stay open.
    security = TritonSecurityConfig(restricted_endpoints=list(RESTRICTED_ENDPOINTS))
    down = threading.Event()

    def stop_serving(model: str, reason: str) -> None:
        # Triton would wait --exit-timeout for the dead stub's requests: end it (and its stubs) now.
        down.set()
        for pid in descendants(os.getpid()):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    health = Health(on_down=stop_serving)
    limits = Limits(
        max_pixels=config.max_pixels,
        max_batch=config.max_batch,
        idle_timeout_s=config.idle_timeout_s,
        request_timeout_s=config.request_timeout_s,
    )
    models = {**MODELS, WHOLE_IMAGE_MODEL: Mode.RESTORE}
    gateway = Gateway(
        config.host, config.http_port, f"http://127.0.0.1:{upstream_port}", models, restorers[0].options, limits, health
    )
    watchdog = None
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with Triton(config=triton_config, security_config=security) as triton:
            for name, mode in MODELS.items():
                inputs, outputs = triton_tensors(mode)
                triton.bind(
                    model_name=name,
                    infer_func=[infer_function(r, mode, config.max_pixels) for r in restorers],
                    inputs=inputs,
                    outputs=outputs,
                    config=model_config(config),
                    strict=True,
                )
            inputs, outputs = triton_tensors(Mode.RESTORE)
            whole = [
                infer_function(r, Mode.RESTORE, config.max_pixels, whole_image_runner(r, detector))
                for r, detector in zip(restorers, detectors)
            ]
            triton.bind(
                model_name=WHOLE_IMAGE_MODEL,
                infer_func=whole,
                inputs=inputs,
                outputs=outputs,
                config=model_config(config),
                strict=True,
            )
            triton.run()  # start and connect
            watchdog = StubWatchdog(stubs(os.getpid()), health.mark_down).start()
            gateway.start()
            if on_ready is not None:
                on_ready()
            try:  # Triton.serve()'s wait, with the watchdog stopped before Triton stops its stubs on purpose
                while not down.is_set() and triton.is_alive():
                    time.sleep(MONITOR_PERIOD_S)
            except KeyboardInterrupt:  # SIGINT, or SIGTERM turned into one
                log.info("stopping: requests in flight get up to %d s", config.exit_timeout_s)
            finally:
                watchdog.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if watchdog is not None:
            watchdog.stop()
        gateway.stop()
        for restorer in restorers:
            restorer.close()
        removed = release_shared_memory()
        if removed:
            log.info("released %d shared-memory file(s) PyTriton left in /dev/shm", len(removed))
    if down.is_set():
        model, reason = next(iter(health.down.items()))  # the first: the others went down with the stop
        raise ModelDown(f"{model}: {reason}")


def _free_port() -> int:
    """A free loopback TCP port (for Triton's own HTTP server behind the gateway)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
