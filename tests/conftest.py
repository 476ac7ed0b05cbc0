"""Shared fixtures: tiny random models built once per session, generated face-like images."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest


def _import_mutated_copies() -> None:
    """Under ``make mutants`` mutmut runs the tests from ./mutants, whose flipnet_rt/ (export/ laid out
    as flipnet_rt/export/ by tests/mutation_run.py) holds
    the mutated sources; the editable install's redirecting finder (scikit-build-core) would hand
    out the originals instead. Put the mutated copies first (the compiled _native module still
    comes from the install)."""
    import importlib.machinery
    import sys

    root = Path.cwd()
    if root.name != "mutants" or not (root / "flipnet_rt").is_dir():
        return

    class MutantsFirst:
        @staticmethod
        def find_spec(fullname, path=None, target=None):
            if fullname.partition(".")[0] != "flipnet_rt" or fullname == "flipnet_rt._native":
                return None
            return importlib.machinery.PathFinder.find_spec(fullname, path or [str(root)])

    sys.meta_path.insert(0, MutantsFirst)


_import_mutated_copies()


@functools.cache
def _random_tiny():
    from flipnet_rt.models import random_model

    return random_model("tiny")


if Path.cwd().name == "mutants":
    # mutmut imports this file in its fork server and forks every mutant's test run from it: import
    # torch and the models there (~5 s), once, instead of in each of hundreds of runs. (pytest imports
    # this file again in each run's session, so the 0.05 s model itself is built again there.)
    _random_tiny()


@pytest.fixture(scope="session")
def tiny_config():
    from flipnet_rt.config.presets import tiny

    return tiny()


@pytest.fixture(scope="session")
def tiny_model():
    """``random:tiny``: seeded random weights, BoostHub W_O drawn (not zero). Do not mutate."""
    return _random_tiny()


@pytest.fixture(scope="session")
def tiny_restorer(tiny_model):
    """A Restorer on the torch backend over ``random:tiny`` (condition cache on)."""
    from flipnet_rt.backends.torch import TorchBackend
    from flipnet_rt.models import PROMPT_KINDS
    from flipnet_rt.runtime.restorer import Restorer

    prompts = {k: tiny_model.prompt(k).numpy() for k in PROMPT_KINDS}
    return Restorer(TorchBackend(tiny_model), tiny_model.config, prompts)


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory) -> Path:
    """random:tiny exported through the command line once per session (fp32, every network)."""
    out = tmp_path_factory.mktemp("engines") / "tiny"
    from flipnet_rt.cli.main import main

    assert main(["export", "--model", "random:tiny", "-o", str(out), "--max-batch", "2"]) == 0
    return out
