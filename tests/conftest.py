"""Shared fixtures: tiny random models built once per session, generated face-like images."""

from __future__ import annotations

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
def tiny_pipeline(tiny_model):
    from flipnet_rt.pipeline import TorchPipeline

    return TorchPipeline(tiny_model)
