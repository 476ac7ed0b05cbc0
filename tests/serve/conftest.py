"""The serving tests run in .venv-serve (PyTriton needs numpy<2): `make test` runs them there.

Elsewhere (the main .venv) the server and repository tests are skipped when PyTriton or
tritonclient is missing, except under CI=true, where CI installs them (make test): there a
missing package fails the run instead of hiding the tests.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

NEEDS_SERVE_EXTRA = ("test_server.py", "test_repository.py")
MISSING = [name for name in ("pytriton", "tritonclient") if importlib.util.find_spec(name) is None]
DEMO_ENGINE = Path(__file__).resolve().parents[2] / "models" / "demo-onnx"


def pytest_collection_modifyitems(config, items):
    if not MISSING or os.environ.get("CI") == "true":  # under CI the tests run and fail on the import
        return
    reason = f"{', '.join(MISSING)} missing: the serving tests run in .venv-serve (make serve; make test runs them)"
    here = Path(__file__).parent
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == here and path.name in NEEDS_SERVE_EXTRA:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def demo_engine() -> Path:
    """The shipped demo engine (64 px, ONNX Runtime): small enough to serve in tests."""
    if not (DEMO_ENGINE / "manifest.json").is_file():
        pytest.fail(f"{DEMO_ENGINE}: the shipped demo engine is missing; it is part of the repository")
    return DEMO_ENGINE
