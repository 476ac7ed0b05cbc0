"""The serving contract without a server: parsing, refusals, one Restorer call per group of options."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import face_like, served

from flipnet_rt.config.options import Mode
from flipnet_rt.serve.protocol import RequestError, model_runner, parse_request, run_batch


@pytest.fixture(scope="module")
def restorer(demo_engine):
    from flipnet_rt.runtime.restorer import Restorer

    return Restorer.load(demo_engine, backend="onnxruntime")


def _request(seed: int, image_seed: int = 0, **options) -> dict[str, np.ndarray]:
    out = {"image": face_like(64, image_seed)[None], "seed": np.array([[seed]], np.int64)}
    for name, value in options.items():
        dtype = np.object_ if isinstance(value, str) else np.float32 if isinstance(value, float) else np.int32
        out[name] = np.array([[value.encode() if isinstance(value, str) else value]], dtype=dtype)
    return out


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({}, "missing input 'image'"),
        ({"image": np.zeros((1, 8, 8, 3), np.float32)}, "float32 [1, 8, 8, 3]; send uint8 [b, H, W, 3]"),
        ({"image": np.zeros((8, 8, 3), np.uint8)}, "send uint8 [b, H, W, 3]"),
        ({"image": np.zeros((1, 40, 40, 3), np.uint8)}, "over this server's limit"),
        ({"image": np.zeros((1, 8, 8, 3), np.uint8), "steps": np.array([[1], [2]], np.int32)}, "expected [1, 1]"),
        ({"image": np.zeros((1, 8, 8, 3), np.uint8), "steps": np.array([[1.5]], np.float32)}, "send int32"),
        ({"image": np.zeros((1, 8, 8, 3), np.uint8), "sampler": np.array([["ddim"]], np.object_)}, ""),
        ({"image": np.zeros((1, 8, 8, 3), np.uint8), "sampler": np.array([[b"fast"]], np.object_)}, "sampler: 'fast'"),
        ({"image": np.zeros((1, 8, 8, 3), np.uint8), "colour": np.array([[1]], np.int32)}, "unknown inputs ['colour']"),
        (
            {"image": np.zeros((1, 8, 8, 3), np.uint8), "fidelity": np.array([[b"auto"]], np.object_)},
            "input 'fidelity': object; send float32",
        ),
        ({"image": np.zeros((1, 8, 8, 3), np.uint8), "fidelity": np.array([[0.5]], np.float32)}, ""),
        # issue 27: values that used to reach the model (or numpy) and come back as a 500 with a traceback
        ({"image": np.zeros((8, 8, 3), np.uint8)}, "one image is [1, H, W, 3]"),
        (
            {"image": np.zeros((1, 8, 8, 3), np.uint8), "seed": np.array([[-1]], np.int64)},
            f"row 0: seed: -1 is outside [0, {2**63 - 1}]",
        ),
        (
            {"image": np.zeros((1, 8, 8, 3), np.uint8), "sampler": np.array([[b"\xff\xfe"]], np.object_)},
            "input 'sampler': not UTF-8 text; send ddim, dpmpp-2m or euler",
        ),
        (
            {"image": np.zeros((1, 8, 8, 3), np.uint8), "steps": np.array([[1001]], np.int32)},
            "row 0: steps: 1001; use 1 to 1000",
        ),
        (
            {"image": np.zeros((1, 8, 8, 3), np.uint8), "guidance": np.array([[np.nan]], np.float32)},
            "row 0: guidance: nan is not a finite number",
        ),
    ],
)
def test_parse_refuses_with_the_input_named(restorer, inputs, message):
    if not message:  # a str (not bytes) sampler is accepted; a fidelity in [0, 1] too
        row = parse_request(inputs, restorer.options, max_pixels=32 * 32)[0]
        if "fidelity" in inputs:
            assert row.fidelity == 0.5 and row.options == restorer.options()
        else:
            assert row.options.sampler.value == "ddim" and row.fidelity == "auto"
        return
    with pytest.raises(RequestError) as info:
        parse_request(inputs, restorer.options, max_pixels=32 * 32)
    assert message in str(info.value)


def test_one_restorer_call_per_group_of_equal_options(restorer):
    calls = []
    restore = model_runner(restorer, Mode.RESTORE)

    def run(images, options, seeds, fidelity):
        calls.append((len(images), options.steps))
        assert fidelity == "auto"  # no fidelity input: the model's estimator
        return restore(images, options, seeds, fidelity)

    requests = [
        _request(1, 1),
        _request(2, 2, steps=2),
        _request(3, 3),
        _request(4, 4, steps=2),
        _request(5, 5, steps=0),
    ]
    answers = run_batch(requests, run, restorer.options, Mode.RESTORE)
    assert sorted(calls) == [(2, 1), (2, 2)]
    assert isinstance(answers[4], RequestError) and "request" not in str(answers[4])
    for request, answer in zip(requests[:4], answers[:4]):
        steps = int(request["steps"][0, 0]) if "steps" in request else None
        alone = served(restorer, request["image"][0], restorer.options(steps=steps), int(request["seed"][0, 0]))
        assert np.array_equal(answer["restored"][0], alone)
