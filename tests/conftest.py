"""Shared fixtures: tiny random models built once per session, generated face-like images."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_config():
    from flipnet_rt.presets import tiny

    return tiny()


@pytest.fixture(scope="session")
def tiny_model():
    """``random:tiny``: seeded random weights, BoostHub W_O drawn (not zero). Do not mutate."""
    from flipnet_rt.models import random_model

    return random_model("tiny")


@pytest.fixture(scope="session")
def tiny_restorer(tiny_model):
    """A Restorer on the torch backend over ``random:tiny`` (condition cache on)."""
    from flipnet_rt.backends.torch import TorchBackend
    from flipnet_rt.models import PROMPT_KINDS
    from flipnet_rt.restorer import Restorer

    prompts = {k: tiny_model.prompt(k).numpy() for k in PROMPT_KINDS}
    return Restorer(TorchBackend(tiny_model), tiny_model.config, prompts)


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory) -> Path:
    """random:tiny exported through the command line once per session (fp32, every network)."""
    out = tmp_path_factory.mktemp("engines") / "tiny"
    from flipnet_rt.cli.main import main

    assert main(["export", "--model", "random:tiny", "-o", str(out), "--max-batch", "2"]) == 0
    return out
