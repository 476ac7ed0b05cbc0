"""The optional ``fidelity`` input of the served restore models (issue 25), without a server.

Checked on the demo engine: fidelity 0 answers the bytes of ``Restorer.restore``, fidelity 1 the
input image byte for byte, rows of one batch with different fidelity each get their own answer
(never run in one call); NaN, inf, 1.5 and -1 refuse their request only, with a message naming
``fidelity``; ``degrade`` refuses the input. With a stand-in restorer: one FaceRestorer per
fidelity value (not per request), and the whole-image model's fidelity reaches its FaceOptions.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from faces.support import ShiftRestorer
from helpers import face_like, served

from flipnet_rt.config.options import Mode
from flipnet_rt.faces.types import Face
from flipnet_rt.serve.protocol import RequestError, model_runner, run_batch


@pytest.fixture(scope="module")
def restorer(demo_engine):
    from flipnet_rt.runtime.restorer import Restorer

    restorer = Restorer.load(demo_engine, backend="onnxruntime")
    assert restorer.has_fidelity  # the demo engine's estimator decides when the input is absent
    return restorer


def _request(images: np.ndarray, seeds: list[int], fidelity: list[float] | None = None) -> dict[str, np.ndarray]:
    """One request of ``len(seeds)`` rows: ``image`` [b, H, W, 3], ``seed`` and ``fidelity`` [b, 1]."""
    out = {"image": images, "seed": np.array([[s] for s in seeds], np.int64)}
    if fidelity is not None:
        out["fidelity"] = np.array([[f] for f in fidelity], np.float32)
    return out


def _counting(run):
    """``run`` recording (images, fidelity) of each call."""
    calls = []

    def wrapped(images, options, seeds, fidelity):
        calls.append((len(images), fidelity))
        return run(images, options, seeds, fidelity)

    return wrapped, calls


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def test_fidelity_zero_is_the_restorer_and_one_the_input_row_by_row(restorer):
    a, b, c = face_like(64, 70), face_like(64, 71), face_like(64, 72)
    odd = np.ascontiguousarray(face_like(90, 73)[:72, :80])  # not the model's size: fitted and back
    requests = [
        _request(a[None], [5], [0.0]),
        _request(np.stack([b, c]), [6, 7], [0.0, 1.0]),  # two rows, their own weights
        _request(a[None], [5], [1.0]),
        _request(odd[None], [8], [0.0]),
        _request(c[None], [7]),
    ]  # absent: auto, the estimator's weight
    run, calls = _counting(model_runner(restorer, Mode.RESTORE))
    answers = run_batch(requests, run, restorer.options, Mode.RESTORE)
    print(f"calls (images, fidelity): {calls}")
    assert sorted(calls, key=str) == sorted([(3, 0.0), (2, 1.0), (1, "auto")], key=str)  # never mixed
    assert not any(isinstance(x, RequestError) for x in answers)
    got = {
        "a0": answers[0]["restored"][0],
        "b0": answers[1]["restored"][0],
        "c1": answers[1]["restored"][1],
        "a1": answers[2]["restored"][0],
        "odd0": answers[3]["restored"][0],
        "c_auto": answers[4]["restored"][0],
    }
    options = restorer.options()
    expected = {
        "a0": restorer.restore([a], options, [5])[0],
        "b0": restorer.restore([b], options, [6])[0],
        "odd0": restorer.restore([odd], options, [8])[0],
        "c_auto": served(restorer, c, options, 7),
        "a1": a,
        "c1": c,
    }
    for name, want in expected.items():
        diff = _max_diff(got[name], want)
        source = (
            "the input" if name.endswith("1") else "the auto blend" if name == "c_auto" else "Restorer.restore alone"
        )
        print(f"{name}: shape {got[name].shape}, max uint8 difference {diff} from {source}")
        assert got[name].shape == want.shape and got[name].dtype == np.uint8
        assert diff == 0
    assert _max_diff(got["a0"], a) > 0  # the restoration does change the face


def test_a_bad_fidelity_refuses_its_request_only(restorer):
    image = face_like(64, 80)
    requests = [
        _request(image[None], [3], [0.0]),
        _request(image[None], [3], [float("nan")]),
        _request(image[None], [3], [1.5]),
        _request(image[None], [3], [-1.0]),
        _request(image[None], [3], [float("inf")]),
        _request(np.stack([image, image]), [3, 4], [0.25, 2.0]),
    ]  # row 1 refuses the request
    run, calls = _counting(model_runner(restorer, Mode.RESTORE))
    answers = run_batch(requests, run, restorer.options, Mode.RESTORE)
    assert calls == [(1, 0.0)]  # only the valid request ran
    diff = _max_diff(answers[0]["restored"][0], restorer.restore([image], restorer.options(), [3])[0])
    print(f"valid request beside the refused ones: max uint8 difference {diff} from Restorer.restore")
    assert diff == 0
    for answer, shown, row in zip(answers[1:], ["nan", "1.5", "-1.0", "inf", "2.0"], [0, 0, 0, 0, 1]):
        message = str(answer)
        print(message)
        assert isinstance(answer, RequestError)
        assert message.startswith(f"row {row}: fidelity: {shown} is outside [0, 1]; ")
        assert "send a weight in [0, 1]" in message and "leave the input out" in message and "\n" not in message


def test_degrade_refuses_fidelity(restorer):
    image = face_like(64, 81)
    requests = [_request(image[None], [2]), _request(image[None], [2], [0.5])]
    run, calls = _counting(model_runner(restorer, Mode.DEGRADE))
    answers = run_batch(requests, run, restorer.options, Mode.DEGRADE)
    print(answers[1])
    assert isinstance(answers[1], RequestError)
    assert "'fidelity'" in str(answers[1]) and "applies to restore only" in str(answers[1])
    assert calls == [(1, "auto")]
    assert np.array_equal(answers[0]["degraded"][0], restorer.degrade([image], restorer.options(), [2])[0])


class _Counted:
    """Patches ``flipnet_rt.faces.pipeline.FaceRestorer`` to count constructions."""

    def __init__(self, monkeypatch) -> None:
        from flipnet_rt.faces import pipeline as module

        self.built: list[object] = []
        counter = self

        class Counting(module.FaceRestorer):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                counter.built.append(self.options.fidelity)

        monkeypatch.setattr(module, "FaceRestorer", Counting)


def test_one_face_restorer_per_fidelity_not_per_request(monkeypatch):
    counted = _Counted(monkeypatch)
    stand_in = ShiftRestorer(64, offset=30)
    run = model_runner(stand_in, Mode.RESTORE)
    image = face_like(64, 82)
    for fidelity in ([0.0], [0.5], [0.0], None, [0.5], None, [1.0]):
        answer = run_batch([_request(image[None], [1], fidelity)], run, stand_in.options, Mode.RESTORE)[0]
        if fidelity == [1.0]:
            assert np.array_equal(answer["restored"][0], image)
    print(f"FaceRestorers built: {counted.built}")
    assert counted.built == [0.0, 0.5, "auto", 1.0]


class _FixedDetector:
    """One face at fixed landmarks in every image (the whole-image model's detector, stood in)."""

    def detect(self, image: np.ndarray) -> list[Face]:
        points = np.array([[50, 56], [78, 56], [64, 72], [52, 88], [76, 88]], np.float32)
        return [Face(box=np.array([30, 30, 98, 110], np.float32), score=1.0, landmarks=points)]


def test_whole_image_model_takes_the_fidelity_per_row(monkeypatch):
    """``restore_image`` through the server's own infer function (a PyTriton request stood in by
    its ``data``): each row is FaceRestorer(..., FaceOptions(fidelity=f)).restore_image(image, seed)."""
    from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer
    from flipnet_rt.serve.server import infer_function, whole_image_runner

    stand_in, detector = ShiftRestorer(64, offset=40), _FixedDetector()
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    expected = {
        w: [
            FaceRestorer(stand_in, detector, FaceOptions(fidelity=w), sampling=None).restore_image(im, s)[0]
            for im, s in zip(images, (11, 12))
        ]
        for w in (0.0, 0.5, 1.0)
    }
    counted = _Counted(monkeypatch)
    infer = infer_function(stand_in, Mode.RESTORE, 256 * 256, whole_image_runner(stand_in, detector))
    requests = [
        SimpleNamespace(data=_request(images, [11, 12], [0.5, 1.0])),
        SimpleNamespace(data=_request(images[:1], [11], [0.0])),
        SimpleNamespace(data=_request(images[1:], [12], [0.5])),
    ]
    answers = infer(requests)
    got = [
        (answers[0]["restored"][0], 0.5, 0),
        (answers[0]["restored"][1], 1.0, 1),
        (answers[1]["restored"][0], 0.0, 0),
        (answers[2]["restored"][0], 0.5, 1),
    ]
    for out, w, i in got:
        diff = _max_diff(out, expected[w][i])
        changed = int(np.any(out != images[i], axis=2).sum())
        print(f"image {i}, fidelity {w}: {changed} pixels changed, max uint8 difference {diff} from FaceRestorer")
        assert diff == 0
    assert _max_diff(expected[0.5][0], expected[0.0][0]) > 0 and _max_diff(expected[1.0][0], expected[0.5][0]) > 0
    assert sorted(counted.built, key=str) == [0.0, 0.5, 1.0]  # one per (options, fidelity), shared by rows
    with pytest.raises(RequestError, match="row 0: fidelity: 1.5 is outside"):
        infer([SimpleNamespace(data=_request(images[:1], [11], [1.5]))])
