"""Checkpoint pieces: optimizer flattening, RNG states, the resumable sample order."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from flipnet_rt.train.checkpoint import (
    flatten_optimizer,
    latest_checkpoint,
    rng_state,
    set_rng_state,
    unflatten_optimizer,
)
from flipnet_rt.train.config import ConfigError
from flipnet_rt.train.stream import Layout, RunOrder


def _stepped_adamw():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.8, 0.95))
    for _ in range(2):
        sum(p.square().sum() for p in params).backward()
        opt.step()
        opt.zero_grad()
    return params, opt


def test_optimizer_state_round_trips_exactly():
    params, opt = _stepped_adamw()
    tensors, meta = flatten_optimizer(opt.state_dict())
    assert set(tensors) == {f"state.{i}.{k}" for i in (0, 1) for k in ("step", "exp_avg", "exp_avg_sq")}
    import json

    meta = json.loads(json.dumps(meta))  # what state.json holds
    fresh = torch.optim.AdamW([torch.nn.Parameter(p.detach().clone()) for p in params], lr=0.5)
    fresh.load_state_dict(unflatten_optimizer(tensors, meta))
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for k in a["state"][i]:
            assert torch.equal(a["state"][i][k], b["state"][i][k])


def test_rng_states_round_trip():
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    tensors, meta = rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    set_rng_state(tensors, meta)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
    assert tensors["torch_cpu"].dtype == torch.uint8


def _keys(order: RunOrder, count: int) -> list[tuple[int, int]]:
    it = iter(order)
    return [next(it) for _ in range(count)]


def test_run_order_covers_epochs_and_resumes():
    layout = Layout(batch_size=4, accumulation=1, processes=1).check()
    keys = _keys(RunOrder(10, seed=1, layout=layout, rank=0), 20)
    assert sorted(i for e, i in keys[:10]) == list(range(10)) and {e for e, _ in keys[:10]} == {0}
    assert sorted(i for e, i in keys[10:]) == list(range(10)) and keys[:10] != keys[10:]
    resumed = _keys(RunOrder(10, seed=1, layout=layout, rank=0, start_step=3), 8)
    assert resumed == keys[12:20]  # step 3 starts at sample 12


def test_run_order_shards_processes_and_accumulation():
    single = _keys(RunOrder(50, seed=2, layout=Layout(8, 1, 1), rank=0), 24)
    layout = Layout(8, accumulation=2, processes=2).check()
    ranks = [_keys(RunOrder(50, seed=2, layout=layout, rank=r), 12) for r in (0, 1)]
    # micro-step m of step s: rank 0 takes 2 samples, rank 1 the next 2
    interleaved = []
    for m in range(6):
        interleaved += ranks[0][2 * m : 2 * m + 2] + ranks[1][2 * m : 2 * m + 2]
    assert interleaved == single
    with pytest.raises(ConfigError, match="not divisible"):
        Layout(6, accumulation=2, processes=2).check()


def test_latest_checkpoint_ignores_partial(tmp_path):
    (tmp_path / "step_00000002").mkdir()
    (tmp_path / "step_00000002" / "state.json").write_text("{}")
    (tmp_path / ".step_00000004.partial").mkdir()
    (tmp_path / "step_00000003").mkdir()  # no state.json: incomplete
    assert latest_checkpoint(tmp_path).name == "step_00000002"


def _write_safetensors_raw(path, tensors: dict, metadata: dict) -> None:
    """A safetensors file written by hand, so the header's key order is ours to choose."""
    import json
    import struct

    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, array in tensors.items():
        blob = np.ascontiguousarray(array, np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_base_digest_ignores_the_header_order(tmp_path):
    """The same weights written by two processes differ in safetensors' metadata order; the base
    digest (checked by --init, resume and merge) must not: it refused a stage-5 --init from stage 4."""
    from flipnet_rt.train.base import DIGEST_FILES, digest

    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2, np.float32)}
    for d, metadata in (
        ("a", {"format": "pt", "producer": "flipnet-rt"}),
        ("b", {"producer": "flipnet-rt", "format": "pt"}),
    ):
        (tmp_path / d).mkdir()
        for name in DIGEST_FILES:
            _write_safetensors_raw(tmp_path / d / name, tensors, metadata)
    assert (tmp_path / "a" / DIGEST_FILES[0]).read_bytes() != (tmp_path / "b" / DIGEST_FILES[0]).read_bytes()
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    _write_safetensors_raw(tmp_path / "b" / DIGEST_FILES[1], {**tensors, "b": np.zeros(2, np.float32)}, {})
    assert digest(tmp_path / "a") != digest(tmp_path / "b")
