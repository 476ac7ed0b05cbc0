"""The naive baseline runs with the weights where it is asked to run (issue 26, item 2).

On a GPU, ``flipnet-rt bench --baseline`` closed every restorer first, and closing a CUDA torch
backend moves the shared model back to the CPU; the baseline then put its pixels on ``cuda`` with
the weights on the CPU and crashed. The CPU cannot hold two real devices, so a stand-in model
records its placement (``.to()`` calls) and checks every tensor it is given against it, as torch
does: the weights "elsewhere" (``meta``) while the baseline is asked for the CPU is the same crash.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from flipnet_rt.imaging.examples import degrade_example, example_face
from flipnet_rt.profiler.baseline import naive_restore, time_baseline


class PlacedModel:
    """``random:tiny`` behind a recorded placement: ``.to()`` moves only the record (its weights stay
    on the CPU, where they compute); a call with a tensor not on the recorded device raises as torch
    does for weights and inputs on different devices."""

    def __init__(self, model: Any, device: str, dtype: torch.dtype = torch.float32) -> None:
        self._model = model
        self.config = model.config
        self.device = torch.device(device)
        self.dtype = dtype
        self.moves: list[tuple[str, torch.dtype]] = []
        self.seen: list[str] = []  # the placement at each network call

    def to(self, *args: Any, device: Any = None, dtype: torch.dtype | None = None, **_: Any) -> PlacedModel:
        for a in args:
            if isinstance(a, torch.dtype):
                dtype = a
            else:
                device = a
        self.device = torch.device(device) if device is not None else self.device
        self.dtype = dtype or self.dtype
        self.moves.append((str(self.device), self.dtype))
        return self

    def parameters(self) -> Iterator[torch.Tensor]:
        yield torch.empty(0, device=self.device, dtype=self.dtype)

    def _check(self, name: str, *args: Any) -> list[Any]:
        for a in args:
            if isinstance(a, torch.Tensor) and a.device != self.device:
                raise RuntimeError(
                    f"{name}: Expected all tensors to be on the same device, but found at least "
                    f"two devices, {self.device} and {a.device}!"
                )
        self.seen.append(str(self.device))
        return [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._model.encode(*self._check("encode", pixels))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._model.decode(*self._check("decode", latents))

    def face(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._model.face(*self._check("face", pixels))

    def context(self, prompt: str, ids: torch.Tensor | None, batch: int) -> torch.Tensor:
        return self._model.context(*self._check("context", prompt, ids, batch))

    def unet(self, *args: torch.Tensor) -> torch.Tensor:
        return self._model.unet(*self._check("unet", *args))


@pytest.fixture(scope="module")
def images(tiny_model) -> list[np.ndarray]:
    side = tiny_model.config.resolution
    return [degrade_example(example_face(side, seed=0), seed=0)]


def test_naive_restore_moves_the_weights_to_its_device_and_back(tiny_model, images):
    placed = PlacedModel(tiny_model, "meta")  # where a closed backend may have left them
    out = naive_restore(placed, images, steps=2, guidance=1.5, device="cpu")
    assert len(out) == 1 and out[0].shape == images[0].shape and out[0].dtype == np.uint8
    assert placed.seen and set(placed.seen) == {"cpu"}  # every network ran with the weights on the CPU
    assert placed.device == torch.device("meta") and placed.dtype == torch.float32  # put back where found


def test_time_baseline_after_a_close_runs_on_the_requested_device(tiny_model, images):
    placed = PlacedModel(tiny_model, "meta", torch.float16)  # e.g. an fp16 restorer, then its close
    timing = time_baseline(placed, images, steps=2, guidance=1.5, warmup=1, iters=2, device="cpu", dtype="float32")
    assert 0 < timing["p50"] <= timing["p90"] <= timing["p99"]
    assert set(placed.seen) == {"cpu"}
    assert placed.moves[0] == ("cpu", torch.float32)  # once, before the warm-up: no move inside the timing
    assert placed.moves[-1] == ("meta", torch.float16) and len(placed.moves) == 2


def test_naive_restore_leaves_a_model_already_in_place_alone(tiny_model, images):
    placed = PlacedModel(tiny_model, "cpu")
    naive_restore(placed, images, steps=2, guidance=1.5, device="cpu")
    assert placed.moves == []


def test_bench_hands_the_baseline_its_device_and_precision(monkeypatch, tmp_path):
    """The CLI order (every restorer closed, then the baseline) names the device and dtype to run in."""
    import flipnet_rt.profiler.baseline as baseline
    from flipnet_rt.cli.main import main

    calls: list[dict[str, Any]] = []

    def recording(model: Any, images: Any, **kwargs: Any) -> dict[str, float]:
        calls.append(kwargs)
        return {"p50": 1.0, "p90": 1.0, "p99": 1.0}

    monkeypatch.setattr(baseline, "time_baseline", recording)
    code = main(
        [
            "bench",
            "--model",
            "random:tiny",
            "--backend",
            "torch",
            "--batch",
            "1",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--iters",
            "1",
            "--cond-cache",
            "on",
            "--baseline",
            "--json",
            str(tmp_path / "b.json"),
        ]
    )
    assert code == 0
    assert len(calls) == 1 and calls[0]["device"] == "cpu" and calls[0]["dtype"] == "float32"
