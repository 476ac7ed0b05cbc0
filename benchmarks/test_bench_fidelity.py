"""The fidelity estimator's cost against a restore (issue 25: goal < 5 % on the CPU), demo engine on
ONNX Runtime CPU, 8 faces a call. Compare within one run: ``pytest -s benchmarks/test_bench_fidelity.py
--benchmark-only`` prints the ratio of the two means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ENGINE = Path(__file__).resolve().parents[1] / "models" / "demo-onnx"
FACES = 8
MEANS: dict[str, float] = {}


@pytest.fixture(scope="module")
def batch():
    from flipnet_rt.imaging.examples import degrade_example, example_face
    from flipnet_rt.imaging.geometry import fit
    from flipnet_rt.runtime.restorer import Restorer

    restorer = Restorer.load(ENGINE, backend="onnxruntime", device="cpu")
    if not restorer.has_fidelity:
        pytest.skip(f"{ENGINE} has no fidelity network")
    faces = [fit(degrade_example(example_face(128, seed=s), seed=s), 64)[0] for s in range(FACES)]
    restored = restorer.restore(faces, restorer.options(seed=0))
    return restorer, faces, restored


def test_restore(benchmark, batch):
    restorer, faces, _ = batch
    benchmark(restorer.restore, faces, restorer.options(seed=0))
    MEANS["restore"] = benchmark.stats.stats.mean


def test_fidelity_estimator(benchmark, batch):
    restorer, faces, restored = batch
    benchmark(restorer.fidelity, faces, restored)
    MEANS["fidelity"] = benchmark.stats.stats.mean
    if "restore" in MEANS:
        print(
            f"\nfidelity estimator: {1e3 * MEANS['fidelity'] / FACES:.2f} ms a face, "
            f"{100 * MEANS['fidelity'] / MEANS['restore']:.1f} % of a restore "
            f"({1e3 * MEANS['restore'] / FACES:.1f} ms a face)"
        )
    assert np.all(np.isfinite(restorer.fidelity(faces, restored)))
