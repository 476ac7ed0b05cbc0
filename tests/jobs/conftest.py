"""The cluster tests' Ray: one local instance for the session (2 CPUs; 2 GPUs declared, none real)."""

from __future__ import annotations

from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "models" / "demo-onnx"


@pytest.fixture(scope="session")
def ray_address():
    """The session's Ray instance (its GCS address, for a driver in another process); the tests in
    this process reuse the connection (``flipnet-rt cluster`` does not start a second one)."""
    from helpers import require

    try:
        import ray
    except ImportError:
        ray = None
    require(ray is not None, "Ray (the cluster extra: pip install 'flipnet-rt[cluster]')")
    require((ENGINE / "manifest.json").is_file(), f"{ENGINE} (the shipped demo engine)")
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
