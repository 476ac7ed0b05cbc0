"""``flipnet-rt serve`` (PyTriton) and ``flipnet-rt export-triton`` (a model repository for Triton).

    flipnet-rt serve --model ENGINE_OR_MODEL_DIR [--host 127.0.0.1] [--http-port 8000] [--grpc-port 8001]
                     [--max-batch 8] [--max-queue-delay-ms 20] [--max-queue-size 64] [--instances 1]
    flipnet-rt export-triton ENGINE_DIR -o REPO [--platform onnxruntime|tensorrt] [--max-batch 8]

``serve`` needs the ``serve`` extra in its own environment (PyTriton needs numpy<2): ``make serve``.
Exit status: 0 after a clean shutdown (SIGTERM, Ctrl-C), 1 when the server failed, 2 for a usage error,
3 when a model's process died while serving (the server stopped; restart it: a supervisor's job).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from .flags import usage_message

log = logging.getLogger(__name__)

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
COMMANDS = ("serve", "export-triton")


def add_parser(sub: argparse._SubParsersAction, model_arg) -> None:
    from ..backends.registry import KINDS
    from ..serve.protocol import DEFAULT_MAX_PIXELS
    from ..serve.repository import PLATFORMS
    from .flags import DEVICES

    p = sub.add_parser("serve", help="serve restore/degrade on NVIDIA Triton (PyTriton): HTTP/gRPC, dynamic batching")
    model_arg(p)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address every port binds to (default loopback; 0.0.0.0 exposes the server to the network)",
    )
    p.add_argument("--http-port", type=int, default=8000, help="KServe v2 HTTP port")
    p.add_argument("--grpc-port", type=int, default=8001, help="KServe v2 gRPC port")
    p.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (/metrics)")
    p.add_argument(
        "--max-batch",
        type=int,
        default=8,
        metavar="N",
        help="largest dynamic batch (images) in one Restorer call; more memory per call",
    )
    p.add_argument(
        "--max-queue-delay-ms",
        type=float,
        default=20.0,
        metavar="MS",
        help="how long a request may wait for others to fill a batch (latency for throughput)",
    )
    p.add_argument(
        "--max-queue-size",
        type=int,
        default=64,
        metavar="N",
        help="requests waiting per model; beyond it a request is rejected at once",
    )
    p.add_argument(
        "--instances",
        type=int,
        default=1,
        metavar="N",
        help="model instances, each with its own loaded Restorer (memory x N)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="largest image (height x width) a request may carry",
    )
    p.add_argument(
        "--backend", default="auto", choices=KINDS, help="the Restorer's backend (auto: the fastest that can run here)"
    )
    p.add_argument("--device", default="auto", choices=DEVICES, help="auto: a CUDA GPU when usable")
    p.add_argument(
        "--exit-timeout", type=int, default=20, metavar="S", help="on SIGTERM, seconds to let requests in flight finish"
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="HTTP: close a connection idle (or stalled in its headers) this long",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="HTTP: a request's body must arrive within this many seconds",
    )

    e = sub.add_parser(
        "export-triton",
        help="write a Triton model repository (one model per network + the "
        "sampling loop as a Python model) for NVIDIA's Triton container",
    )
    e.add_argument("engine", type=Path, metavar="ENGINE_DIR", help="engine directory from `flipnet-rt export`/`build`")
    e.add_argument("-o", "--output", required=True, type=Path, metavar="REPO", help="new model repository folder")
    e.add_argument(
        "--platform",
        choices=list(PLATFORMS),
        default="onnxruntime",
        help="network models on onnxruntime_onnx (the .onnx files) or tensorrt_plan (the .plan "
        "files of `flipnet-rt build`, for the GPU they were built on)",
    )
    e.add_argument(
        "--max-batch", type=int, default=8, metavar="N", help="images per dynamic batch of the flipnet model"
    )
    e.add_argument("--max-queue-delay-ms", type=float, default=20.0, metavar="MS")
    e.add_argument("--max-queue-size", type=int, default=64, metavar="N")
    e.add_argument("--instances", type=int, default=1, metavar="N", help="instances of each network model")
    e.add_argument("--kind", choices=("gpu", "cpu"), default="gpu", help="instance group kind of the network models")


def run(args: argparse.Namespace) -> int:
    if args.command == "export-triton":
        return _export(args)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    try:
        import pytriton  # noqa: F401
    except ImportError:
        print(
            "error: serve needs PyTriton (numpy<2, its own environment): run `make serve`, then "
            ".venv-serve/bin/flipnet-rt serve ...",
            file=sys.stderr,
        )
        return 2
    from ..serve.server import ModelDown, ServeConfig, serve

    if not args.model:
        print("error: no model: pass --model DIR (an engine or model directory) or random:CONFIG", file=sys.stderr)
        return 2
    try:
        config = ServeConfig(
            model=args.model,
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            max_batch=args.max_batch,
            max_queue_delay_ms=args.max_queue_delay_ms,
            max_queue_size=args.max_queue_size,
            instances=args.instances,
            max_pixels=args.max_pixels,
            backend=args.backend,
            device=None if args.device == "auto" else args.device,
            exit_timeout_s=args.exit_timeout,
            idle_timeout_s=args.idle_timeout,
            request_timeout_s=args.request_timeout,
        )
    except ValueError as exc:
        print(f"error: {usage_message(exc, (f.name for f in dataclasses.fields(ServeConfig)))}", file=sys.stderr)
        return 2
    if args.host not in _LOOPBACK:
        print(
            f"warning: --host {args.host}: the server is reachable from the network and has no "
            f"authentication; put it behind your own gateway",
            file=sys.stderr,
        )

    def ready() -> None:
        print(
            f"serving restore, degrade: http://{args.host}:{args.http_port} grpc {args.host}:{args.grpc_port} "
            f"metrics http://{args.host}:{args.metrics_port}/metrics; SIGTERM or Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )

    try:
        serve(config, on_ready=ready)
    except (OSError, ValueError, KeyError) as exc:  # a model that cannot load: BackendUnavailable, EngineError
        print(f"error: --model {args.model}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    except ModelDown as exc:
        print(
            f"error: the server stopped: a model went down ({exc}); restart it (exit status 3 is for its supervisor)",
            file=sys.stderr,
        )
        return 3
    except Exception as exc:  # Triton failed to start or died: say so, exit 1
        print(f"error: the server failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("server stopped", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..engine.manifest import EngineError
    from ..serve.repository import RepositoryOptions, write_repository

    try:
        options = RepositoryOptions(
            platform=args.platform,
            max_batch=args.max_batch,
            max_queue_delay_ms=args.max_queue_delay_ms,
            max_queue_size=args.max_queue_size,
            instances=args.instances,
            kind=args.kind,
        )
        out = write_repository(args.engine, args.output, options)
    except (EngineError, ValueError, FileExistsError) as exc:
        print(f"error: {usage_message(exc, (f.name for f in dataclasses.fields(RepositoryOptions)))}", file=sys.stderr)
        return 2
    print(
        f"wrote Triton model repository {out} (run it with NVIDIA's Triton container: see {out}/README.md)",
        file=sys.stderr,
    )
    return 0
