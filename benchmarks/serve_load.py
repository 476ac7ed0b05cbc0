"""Load test of ``flipnet-rt serve``: latency percentiles, throughput, batch sizes, rejections.

Starts the server on loopback (free ports), then for each concurrency C runs C client threads,
each sending one-image ``restore`` requests over gRPC back to back (closed loop), until
``--requests`` have been answered or ``--max-seconds`` have passed. Reports per concurrency: p50,
p90 and p99 latency, throughput (images/s), the batch sizes Triton formed (its statistics API)
and rejections. Then an overload burst: more concurrent requests than the running batch and the
queue hold, counting how many are rejected and how soon. Finally SIGTERM and the shutdown time.

Run in the serving environment (``make serve``)::

    .venv-serve/bin/python benchmarks/serve_load.py --model models/demo-onnx --concurrency 1 4 16

Client and server share this machine's cores: the numbers are of the pair, not of the server alone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def face(seed: int, size: int) -> np.ndarray:
    """A smooth RGB uint8 test image ``[size, size, 3]``: an ellipse on a gradient, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    inside = ((xx - 0.5) / 0.32) ** 2 + ((yy - 0.5) / 0.42) ** 2 < 1.0
    base = np.stack([0.3 + 0.4 * xx, 0.3 + 0.3 * yy, 0.5 - 0.2 * xx], axis=-1)
    img = np.where(inside[..., None], np.array([0.85, 0.65, 0.55]), base) + rng.normal(0, 0.03, (size, size, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_server(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, int, int]:
    import tritonclient.grpc as grpcclient

    http, grpc, metrics = free_ports(3)
    cmd = [
        sys.executable,
        "-m",
        "flipnet_rt",
        "serve",
        "--model",
        args.model,
        "--backend",
        args.backend,
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--max-batch",
        str(args.max_batch),
        "--max-queue-delay-ms",
        str(args.max_queue_delay_ms),
        "--max-queue-size",
        str(args.max_queue_size),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if client.is_server_ready() and client.is_model_ready("restore"):
                return proc, http, grpc
        except Exception:  # not listening yet
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the server did not start; its log:\n{log.read_text()[-3000:]}")


def request(grpcclient, image: np.ndarray, seed: int) -> list:
    batch = image[None]
    tensor = grpcclient.InferInput("image", list(batch.shape), "UINT8")
    tensor.set_data_from_numpy(batch)
    seed_in = grpcclient.InferInput("seed", [1, 1], "INT64")
    seed_in.set_data_from_numpy(np.array([[seed]], np.int64))
    return [tensor, seed_in]


def batch_stats(http: int) -> dict[int, int]:
    import tritonclient.http as httpclient

    stats = httpclient.InferenceServerClient(f"127.0.0.1:{http}").get_inference_statistics("restore")
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["model_stats"][0]["batch_stats"]}


def run_level(args: argparse.Namespace, grpc: int, http: int, concurrency: int) -> dict:
    """Closed loop: ``concurrency`` threads, until ``args.requests`` answered or ``args.max_seconds``."""
    import tritonclient.grpc as grpcclient

    images = [face(i, args.size) for i in range(16)]
    latencies: list[float] = []
    rejected: list[str] = []
    lock = threading.Lock()
    counter = iter(range(args.requests))
    before = batch_stats(http)
    start = time.monotonic()

    def worker() -> None:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
        while time.monotonic() - start < args.max_seconds:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.monotonic()
            try:
                client.infer("restore", request(grpcclient, images[i % len(images)], i))
                with lock:
                    latencies.append(time.monotonic() - t0)
            except Exception as exc:  # rejection or failure: counted, reported
                with lock:
                    rejected.append(str(exc).splitlines()[0])
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    after = batch_stats(http)
    batches = {k: after[k] - before.get(k, 0) for k in sorted(after) if after[k] > before.get(k, 0)}
    ms = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "answered": len(latencies),
        "rejected": len(rejected),
        "wall_s": round(wall, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p90_ms": round(float(np.percentile(ms, 90)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "images_per_s": round(len(latencies) / wall, 2),
        "batches": batches,
        "errors": sorted(set(rejected))[:3],
    }


def overload(args: argparse.Namespace, grpc: int) -> dict:
    """A burst beyond the running batch plus the queue: how many are rejected, and how soon."""
    import tritonclient.grpc as grpcclient

    n = args.max_batch + args.max_queue_size + args.overload_extra
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
    served, rejected = [], []
    lock, done = threading.Lock(), threading.Event()
    image = face(0, args.size)
    start = time.monotonic()

    def record(result, error):
        with lock:
            (served if error is None else rejected).append(time.monotonic() - start)
            if len(served) + len(rejected) == n:
                done.set()

    for i in range(n):
        client.async_infer("restore", request(grpcclient, image, i), callback=record)
    done.wait(args.max_seconds * 4)
    client.close()
    return {
        "sent": n,
        "served": len(served),
        "rejected": len(rejected),
        "last_rejection_s": round(max(rejected), 3) if rejected else None,
        "last_served_s": round(max(served), 2) if served else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "models" / "demo-onnx"))
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--requests", type=int, default=64, help="requests per concurrency level (bound)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="time per concurrency level (bound)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-queue-delay-ms", type=float, default=20.0)
    p.add_argument("--max-queue-size", type=int, default=64)
    p.add_argument("--overload-extra", type=int, default=32, help="burst size beyond batch + queue (0: no burst)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    log = Path(tempfile.mkdtemp(prefix="serve_load.")) / "server.log"
    proc, http, grpc = start_server(args, log)
    results: dict = {
        "levels": [],
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "cpu_count": os.cpu_count(),
    }
    try:
        import tritonclient.grpc as grpcclient

        warm = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
        warm.infer("restore", request(grpcclient, face(0, args.size), 0))  # sessions, first-call allocations
        for c in args.concurrency:
            level = run_level(args, grpc, http, c)
            results["levels"].append(level)
            print(json.dumps(level), file=sys.stderr, flush=True)
        if args.overload_extra > 0:
            results["overload"] = overload(args, grpc)
    finally:
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            results["shutdown"] = {"exit_code": proc.wait(timeout=60), "seconds": round(time.monotonic() - t0, 2)}
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            results["shutdown"] = {"exit_code": None, "seconds": None}

    print("| concurrency | answered | rejected | p50 ms | p90 ms | p99 ms | images/s | batches (size: count) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["levels"]:
        batches = ", ".join(f"{k}: {v}" for k, v in r["batches"].items())
        print(
            f"| {r['concurrency']} | {r['answered']} | {r['rejected']} | {r['p50_ms']} | {r['p90_ms']} | "
            f"{r['p99_ms']} | {r['images_per_s']} | {batches} |"
        )
    if "overload" in results:
        o = results["overload"]
        print(
            f"\noverload: {o['sent']} at once -> {o['served']} served (last after {o['last_served_s']} s), "
            f"{o['rejected']} rejected (all within {o['last_rejection_s']} s)"
        )
    s = results["shutdown"]
    print(f"SIGTERM -> exit {s['exit_code']} in {s['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
