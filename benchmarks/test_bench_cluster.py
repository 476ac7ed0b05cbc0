"""Images/s of ``flipnet-rt restore`` against ``flipnet-rt cluster restore`` with 1 and 2 actors (issue 30).

``make bench`` (or ``pytest benchmarks/test_bench_cluster.py --benchmark-only``). One local Ray
instance with 2 CPUs is started first (not timed: a cluster is up before its jobs); every round is
a whole job into a fresh output folder, timed from the command's start to its end, so the cluster's
actor start and model load (once per actor) are inside the time, as the single machine's model load
is. IMAGES aligned 64 px crops, the demo engine, STEPS DDIM steps. ``extra_info`` and the printed
table: images/s of each job (median of ROUNDS, interleaved), and for the cluster the actors' own
rate summed (images over busy seconds, from ``_summary.json``): the rate once the actors are up.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest
from helpers import face_like, require
from PIL import Image

from flipnet_rt.cli.main import main

ENGINE = Path(__file__).resolve().parents[1] / "models" / "demo-onnx"
IMAGES = 48
STEPS = "4"
ROUNDS = 3
COMMON = ["--model", str(ENGINE), "--backend", "onnxruntime", "--device", "cpu", "--aligned", "--steps", STEPS]
RUNS = {  # name: the command's arguments after INPUT -o OUT
    "restore": [],
    "cluster-1-actor-2-threads": ["--actors", "1", "--cpus-per-actor", "2", "--batch-size", "4"],
    "cluster-1-actor": ["--actors", "1", "--cpus-per-actor", "1", "--batch-size", "4"],
    "cluster-2-actors": ["--actors", "2", "--cpus-per-actor", "1", "--batch-size", "4"],
}


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="the cluster benchmark needs Ray: pip install 'flipnet-rt[cluster]'")
    require((ENGINE / "manifest.json").is_file(), f"{ENGINE} (the shipped demo engine)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("crops")
    for i in range(IMAGES):
        Image.fromarray(face_like(64, i)).save(folder / f"face{i:03d}.png")
    return folder


def test_cluster_restore_throughput(benchmark, ray_instance, crops, tmp_path):
    """Every configuration ROUNDS times, interleaved (round 1 of each, then round 2...), so that a
    shared machine's changing load falls on all of them alike; the median job time of each."""
    outs = iter(tmp_path / f"out{i}" for i in range(1000))
    times: dict[str, list[float]] = {name: [] for name in RUNS}
    actors: dict[str, list[float]] = {name: [] for name in RUNS}

    def one(name: str) -> None:
        out = next(outs)
        command = ["restore"] if name == "restore" else ["cluster", "restore"]
        began = time.perf_counter()
        status = main([*command, str(crops), "-o", str(out), *COMMON, *RUNS[name]])
        times[name].append(time.perf_counter() - began)
        assert status == 0, f"{name}: exit {status}"
        if name != "restore":
            summary = json.loads((out / "_summary.json").read_text())
            assert summary["written"] == IMAGES
            actors[name].append(sum(a["per_second"] for a in summary["actors"].values()))

    def cycle() -> None:
        for _ in range(ROUNDS):
            for name in RUNS:
                one(name)

    benchmark.pedantic(cycle, rounds=1, warmup_rounds=0)
    lines = [f"{IMAGES} aligned 64 px crops, demo engine, {STEPS} DDIM steps, median of {ROUNDS} interleaved jobs:"]
    for name in RUNS:
        rate = IMAGES / statistics.median(times[name])
        benchmark.extra_info[f"{name}_images_per_s"] = round(rate, 3)
        line = f"  {name:28s} {rate:5.2f} images/s (job, start included)"
        if actors[name]:
            busy = statistics.median(actors[name])
            benchmark.extra_info[f"{name}_actors_images_per_s"] = round(busy, 3)
            line += f"; actors' own rate summed {busy:5.2f} images/s"
        lines.append(line)
    print("\n" + "\n".join(lines))
