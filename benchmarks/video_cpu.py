"""Where the video pipeline's CPU goes (issue 16): CPU time per frame of each thread, against wall time.

Restores the benchmark's generated clip (benchmarks/test_bench_video.py: the astronaut's head at
the demo model's scale, sensor noise, a sine AAC track) with the naive loop or the pipeline (the
CLI's defaults: two single-threaded engine workers, region tracking, batches of 8) and samples
``/proc/self/task/*/stat`` every 20 ms, so threads that end before the run does are counted up
to their last sample. Threads are named by Python's ``threading`` names where they are Python
threads (``flipnet-restore``: the engine workers; ``flipnet-decode``, ``flipnet-encode``; ``main``),
else by the kernel's name (ONNX Runtime's and FFmpeg's own threads show as ``python``).

Also measures whether the machine's cores are real: one single-threaded engine worker restoring
batches alone, then two at once (``--cores-check``).

    python benchmarks/video_cpu.py --size 640x360 --faces 3 --variant pipeline [--cores-check]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

HZ = os.sysconf("SC_CLK_TCK")


class ThreadSampler:
    """Cumulative CPU seconds per thread, sampled from /proc until ``stop()``."""

    def __init__(self, period: float = 0.02) -> None:
        self.period = period
        self.cpu: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _sample(self) -> None:
        python_names = {t.native_id: t.name for t in threading.enumerate()}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/self/task/{tid}/comm") as f:
                    comm = f.read().strip()
            except OSError:  # ended between listing and reading
                continue
            tid_i = int(tid)
            self.cpu[tid_i] = (int(fields[11]) + int(fields[12])) / HZ
            name = python_names.get(tid_i, comm)
            self.names[tid_i] = "main" if name == "MainThread" else name.split("_")[0].rstrip("0123456789-")

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def __enter__(self) -> ThreadSampler:
        self._sample()
        self.start = dict(self.cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def by_name(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for tid, seconds in self.cpu.items():
            name = self.names[tid]
            if name != "sampler":
                out[name] = out.get(name, 0.0) + seconds - self.start.get(tid, 0.0)
        return out


def cores_check(engine: Path, calls: int = 12) -> str:
    """ms per face of one single-threaded worker alone and of two at once (batches of 4)."""
    from flipnet_rt.backends.registry import BackendOptions
    from flipnet_rt.runtime.restorer import Restorer

    one_thread = BackendOptions(threads=1)
    workers = [Restorer.load(engine, backend="onnxruntime", device="cpu", options=one_thread) for _ in range(2)]
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    for w in workers:
        w.restore(faces)

    def loop(worker, out: list) -> None:
        start = time.perf_counter()
        for _ in range(calls):
            worker.restore(faces)
        out.append((time.perf_counter() - start) * 1000 / calls / len(faces))

    alone: list[float] = []
    loop(workers[0], alone)
    both: list[float] = []
    threads = [threading.Thread(target=loop, args=(w, both)) for w in workers]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return (
        f"ms per face, one single-threaded worker alone {alone[0]:.1f}, two at once {both[0]:.1f} and "
        f"{both[1]:.1f}: two workers restore {2 * alone[0] / max(both):.2f}x the faces per second of one"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--faces", type=int, default=3)
    parser.add_argument("--variant", choices=("naive", "pipeline"), default="pipeline")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--cores-check", action="store_true")
    args = parser.parse_args(argv)
    os.environ["FLIPNET_BENCH_FRAMES"] = str(args.frames)

    import tempfile

    import test_bench_video as bench

    from flipnet_rt.backends.registry import BackendOptions
    from flipnet_rt.faces.detectors import load_detector
    from flipnet_rt.runtime.profiling import StageTimer
    from flipnet_rt.runtime.restorer import Restorer

    width, height = (int(v) for v in args.size.split("x"))
    detector = load_detector("mtcnn")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = bench.make_clip(folder, (width, height), args.faces)
        if args.variant == "naive":
            restorer = Restorer.load(bench.ENGINE, backend="onnxruntime", device="cpu")

            def go(timer):
                return bench.naive(
                    src, folder / "out.mp4", bench.timed_faces(restorer, detector, timer), detector, timer
                )
        else:
            one_thread = BackendOptions(threads=1)
            workers = [
                Restorer.load(bench.ENGINE, backend="onnxruntime", device="cpu", options=one_thread) for _ in range(2)
            ]

            def go(timer):
                faces = [bench.timed_faces(w, detector, timer) for w in workers]
                return bench.pipeline(src, folder / "out.mp4", faces, detector, timer)

        go(StageTimer())  # warm-up: ONNX Runtime's arenas, x264
        began = os.times()
        with ThreadSampler() as sampler:
            seconds = go(StageTimer())
        ended = os.times()
    cpu = (ended.user - began.user) + (ended.system - began.system)
    n = args.frames
    print(
        f"{args.variant}, {args.size}, {args.faces} faces, {n} frames: {n / seconds:.2f} frames/s, wall "
        f"{1000 * seconds / n:.1f} ms a frame, CPU {1000 * cpu / n:.1f} ms a frame ({cpu / seconds:.2f} cores busy); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    for name, busy in sorted(sampler.by_name().items(), key=lambda kv: -kv[1]):
        if busy > 0:
            print(f"  {name:20s} {1000 * busy / n:7.1f} ms CPU a frame")
    if args.cores_check:
        print(cores_check(bench.ENGINE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
