"""flipnet_rt.export.verify.verify's bookkeeping with stand-ins for the engine, PyTorch and the backends: which
networks are compared on which inputs, the K/V hand-over, thresholds by precision, skipped backends
and the end-to-end PSNR (issue 19). The real comparison (an exported random:tiny on ONNX Runtime)
is tests/export/test_verify.py's slow tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch")

import flipnet_rt.export.verify as verify_module  # noqa: E402
from flipnet_rt.backends.base import BackendUnavailable  # noqa: E402
from flipnet_rt.config.presets import tiny  # noqa: E402
from flipnet_rt.engine.spec import KVSpec, Profile, network_specs  # noqa: E402

CONFIG = tiny()
PROFILE = Profile(B=(1, 2, 2), h=(2, 4, 4), w=(2, 4, 4))
SPECS = network_specs(CONFIG, [KVSpec(0, 3)], detector=False)  # the networks of a restore
# the optional networks, in their own tests: the fidelity estimator and the face detector
ALL_SPECS = network_specs(CONFIG, [KVSpec(0, 3)], fidelity=True, detector=True)


def _outputs(name, feeds):
    """A deterministic stand-in network: every output filled with the sum of every input."""
    total = float(sum(np.sum(v, dtype=np.float64) for v in feeds.values()))
    env = PROFILE.env(0)
    outputs = ALL_SPECS[name].outputs
    return {t.name: np.full(t.concrete(env), total * (j + 1), np.float32) for j, t in enumerate(outputs)}


class Reference:
    def __init__(self, log):
        self.log, self.dtypes = log, []

    def run(self, name, feeds):
        self.log.append((name, {k: v.copy() for k, v in feeds.items()}))
        return _outputs(name, feeds)

    def from_numpy(self, array, dtype=None):
        self.dtypes.append(dtype)
        return array

    def to_numpy(self, array):
        return array


class TorchRestorer:
    """Restorer.load(model, backend="torch", device="cpu") and Restorer(backend, config, prompts)."""

    calls = []
    config = CONFIG

    def __init__(self, backend, config=None, prompts=None):
        self.backend = backend
        self.closed = False
        TorchRestorer.calls.append(("init", backend, config, prompts))

    @classmethod
    def load(cls, model, *, backend, device):
        TorchRestorer.calls.append(("load", model.spec, backend, device))
        restorer = cls(Reference(TorchRestorer.reference_log))
        TorchRestorer.torch = restorer
        return restorer

    def options(self, **kwargs):
        return kwargs

    def restore(self, images, options):
        TorchRestorer.calls.append(("restore", type(self.backend).__name__, options, len(images)))
        shift = getattr(self.backend, "shift", 0)
        return [np.clip(img.astype(np.int16) + shift, 0, 255).astype(np.uint8) for img in images]

    def close(self):
        self.closed = True


class EngineBackend:
    """An engine backend whose outputs are the reference times (1 + error); ``shift`` grey levels
    end to end."""

    def __init__(self, error, shift):
        self.error, self.shift, self.closes, self.runs, self.dtypes = error, shift, 0, [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.exited = True

    def run(self, name, feeds):
        """Output j is off by error * (2, 1.5, 1.5, ...): the first has the largest relative error,
        a later one (twice as large) the largest absolute error."""
        self.runs.append(name)
        return {
            k: v * np.float32(1 + self.error * (2 if j == 0 else 1.5))
            for j, (k, v) in enumerate(_outputs(name, feeds).items())
        }

    def from_numpy(self, array, dtype=None):
        self.dtypes.append(dtype)
        return array

    def to_numpy(self, array):
        return array

    def close(self):
        self.closes += 1


def _setup(monkeypatch, *, precision="fp32", networks=tuple(SPECS), backends=()):
    entries = {n: SimpleNamespace(spec=ALL_SPECS[n], profile=PROFILE) for n in networks}
    checked = []
    manifest = SimpleNamespace(
        precision=precision, networks=entries, check_model=lambda config, directory: checked.append((config, directory))
    )
    engine = SimpleNamespace(manifest=manifest, config=CONFIG, prompts={"p": 1})
    monkeypatch.setattr(verify_module, "open_engine", lambda d: engine if d == "E" else None)

    class Model:
        def __init__(self, spec):
            self.spec = spec

        def load(self):
            return SimpleNamespace(config=CONFIG)

    monkeypatch.setattr(verify_module, "ModelArtifacts", Model)
    TorchRestorer.calls, TorchRestorer.reference_log = [], []
    monkeypatch.setattr(verify_module, "Restorer", TorchRestorer)
    types, opened = [], {}
    for name, applies, outcome in backends:
        types.append(
            SimpleNamespace(name=name, kind=name, device="cpu", applies=lambda e, a=applies: a and e is engine)
        )
        opened[name] = outcome
    monkeypatch.setattr(verify_module, "REGISTRY", types)

    def select_backend(kind, *, model, device, options):
        assert model is engine and device == "cpu" and options.low_memory is True
        outcome = opened[kind]
        if isinstance(outcome, Exception):
            raise outcome
        return SimpleNamespace(backend=outcome)

    monkeypatch.setattr(verify_module, "select_backend", select_backend)
    return engine, checked


IMAGES = [np.full((8, 8, 3), 100, np.uint8), np.full((8, 8, 3), 50, np.uint8)]


def test_every_network_is_compared_on_the_reference_inputs(monkeypatch):
    good, bad = EngineBackend(0.0, 0), EngineBackend(2e-4, 3)
    engine, checked = _setup(
        monkeypatch, backends=[("onnxruntime-cpu", True, good), ("tensorrt", True, bad), ("never", False, None)]
    )
    report = verify_module.verify("E", "random:tiny", images=IMAGES, steps=3, seed=5)
    assert checked == [(CONFIG, "E")]
    log = TorchRestorer.reference_log
    names = [name for name, _ in log]
    assert names[0] == "unet_cond" and sorted(names) == sorted(SPECS)  # unet_cond first
    for name, feeds in log:  # the seeded inputs at the profile's min shape
        expected = verify_module._inputs(SPECS[name], PROFILE.env(0), 5)
        if name == "unet_input":  # but the K/V computed by unet_cond
            kv = _outputs("unet_cond", dict(log)["unet_cond"])
            expected.update(kv)
        assert feeds.keys() == expected.keys()
        for k in feeds:
            np.testing.assert_array_equal(feeds[k], expected[k])
    # the torch restorer made the expected images and was closed before the backends ran
    assert TorchRestorer.calls[0] == ("load", "random:tiny", "torch", "cpu")
    assert ("restore", "Reference", {"steps": 3, "seed": 5}, 2) in TorchRestorer.calls
    assert TorchRestorer.torch.closed
    # one check per backend and network, in that order, each network's session closed after it
    order = [n for n in names]
    assert [(c.backend, c.network) for c in report.checks] == (
        [("onnxruntime-cpu", n) for n in order] + [("tensorrt", n) for n in order]
    )
    assert good.runs == order and good.closes == len(order) and bad.closes == len(order)
    for c in report.checks:
        assert c.limit == 1e-4
        if c.backend == "onnxruntime-cpu":
            assert (c.max_abs, c.rel_l2, c.passed) == (0.0, 0.0, True)
        else:
            ref = _outputs(c.network, dict(log)[c.network])
            errors = [
                verify_module._compare(v * np.float32(1 + 2e-4 * (2 if j == 0 else 1.5)), v)
                for j, v in enumerate(ref.values())
            ]
            worst = max(errors, key=lambda e: e[1])  # the largest relative error decides
            assert (c.max_abs, c.rel_l2) == worst and c.passed is False
            if len(errors) > 1:
                assert worst != max(errors)  # not the largest absolute error
    # timesteps go in as float32, every other input in the network's own dtype
    timesteps = [t.name == "timestep" for n in names for t in SPECS[n].inputs]
    expected_dtypes = ["float32" if is_t else None for is_t in timesteps]
    assert TorchRestorer.torch.backend.dtypes == expected_dtypes
    assert good.dtypes == bad.dtypes == expected_dtypes
    # each backend restores the same images through a Restorer of its own, with the torch options
    inits = [c for c in TorchRestorer.calls if c[0] == "init"][1:]
    assert inits == [("init", good, CONFIG, {"p": 1}), ("init", bad, CONFIG, {"p": 1})]
    restores = [c for c in TorchRestorer.calls if c[0] == "restore"]
    assert restores == [
        ("restore", "Reference", {"steps": 3, "seed": 5}, 2),
        ("restore", "EngineBackend", {"steps": 3, "seed": 5}, 2),
        ("restore", "EngineBackend", {"steps": 3, "seed": 5}, 2),
    ]
    # end to end: the worst image's PSNR per backend (inf: identical; 3 grey levels everywhere)
    assert report.psnr_db == {"onnxruntime-cpu": float("inf"), "tensorrt": pytest.approx(20 * np.log10(255 / 3))}
    assert report.psnr_limit == 40.0 and report.skipped == [] and not report.passed


def test_fp16_limits_subsets_and_skips(monkeypatch):
    backend = EngineBackend(1e-2, 0)
    _setup(
        monkeypatch,
        precision="fp16",
        networks=("unet_input", "vae_decoder", "unet_cond"),
        backends=[("onnxruntime-cuda", True, BackendUnavailable("no GPU here")), ("onnxruntime-cpu", True, backend)],
    )
    later = EngineBackend(0.0, 0)
    _setup(
        monkeypatch,
        precision="fp16",
        networks=("unet_input", "vae_decoder", "unet_cond"),
        backends=[
            ("onnxruntime-cuda", True, BackendUnavailable("no GPU here")),
            ("onnxruntime-cpu", True, backend),
            ("torch", True, later),
        ],
    )
    report = verify_module.verify("E", "m", images=IMAGES, networks=["vae_decoder", "unet_input"])
    assert later.runs == ["unet_input", "vae_decoder"]  # the backends after a skip still run
    assert [name for name, _ in TorchRestorer.reference_log] == ["unet_input", "vae_decoder"]  # manifest order
    assert all(c.limit == 2e-2 and c.passed for c in report.checks)
    assert report.psnr_limit == 25.0 and report.psnr_db == {}
    assert report.skipped == [
        "onnxruntime-cuda: no GPU here",
        "onnxruntime-cpu end-to-end PSNR: the engine directory lacks some networks",
        "torch end-to-end PSNR: the engine directory lacks some networks",
    ]
    assert not any(call[0] == "restore" for call in TorchRestorer.calls)  # no end-to-end without the networks
    # the default seed 0 and the four steps, when the five networks of a restore are there (no "unet")
    _setup(
        monkeypatch,
        networks=("vae_encoder", "vae_decoder", "face_encoder", "unet_cond", "unet_input"),
        backends=[("onnxruntime-cpu", True, EngineBackend(0.0, 0))],
    )
    assert verify_module.verify("E", "m", images=IMAGES).psnr_db == {"onnxruntime-cpu": float("inf")}
    assert ("restore", "Reference", {"steps": 4, "seed": 0}, 2) in TorchRestorer.calls
    first = TorchRestorer.reference_log[0]
    np.testing.assert_array_equal(
        first[1]["sample"], verify_module._inputs(SPECS["unet_cond"], PROFILE.env(0), 0)["sample"]
    )


def test_a_check_exactly_at_its_limit_passes(monkeypatch):
    _setup(monkeypatch, networks=("vae_decoder",), backends=[("onnxruntime-cpu", True, EngineBackend(0.0, 0))])
    monkeypatch.setattr(verify_module, "_compare", lambda ours, ref: (0.5, 1e-4))
    report = verify_module.verify("E", "m", images=IMAGES)
    assert [(c.rel_l2, c.limit, c.passed) for c in report.checks] == [(1e-4, 1e-4, True)]


def test_the_fidelity_estimator_is_compared_on_a_face_and_its_restoration(monkeypatch):
    """On seeded noise the fidelity estimator saturates at 0 (nothing to compare), so with images it is
    fed as the runtime feeds it: the first image fitted to the model's resolution, and that face
    restored by PyTorch in 2 steps at verify's seed, each float32 [1, 3, R, R]."""
    from flipnet_rt.imaging.geometry import fit
    from flipnet_rt.imaging.tensor import to_float

    backend = EngineBackend(0.0, 0)
    _setup(monkeypatch, networks=("fidelity",), backends=[("onnxruntime-cpu", True, backend)])
    monkeypatch.setattr(Reference, "shift", 7, raising=False)  # PyTorch's "restoration": 7 grey levels up
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 240, (12, 9, 3), dtype=np.uint8), np.full((8, 8, 3), 50, np.uint8)]
    report = verify_module.verify("E", "m", images=images, seed=11)
    [(name, feeds)] = TorchRestorer.reference_log
    face = fit(images[0], CONFIG.resolution)[0]
    assert name == "fidelity" and list(feeds) == ["image", "restored"]
    np.testing.assert_array_equal(feeds["image"], to_float(face[None]))
    np.testing.assert_array_equal(
        feeds["restored"], to_float((face.astype(np.int16) + 7).clip(0, 255).astype(np.uint8)[None])
    )
    assert feeds["image"].shape == (1, 3, CONFIG.resolution, CONFIG.resolution)
    assert feeds["image"].dtype == feeds["restored"].dtype == np.float32
    # the one restoration made for it: the face alone, 2 steps, verify's seed (no end-to-end run here)
    assert [c for c in TorchRestorer.calls if c[0] == "restore"] == [
        ("restore", "Reference", {"steps": 2, "seed": 11}, 1)
    ]
    assert backend.runs == ["fidelity"] and report.passed
    # without images there is no face: the seeded draws at the profile's smallest shape, as for the others
    _setup(monkeypatch, networks=("fidelity",), backends=[("onnxruntime-cpu", True, EngineBackend(0.0, 0))])
    verify_module.verify("E", "m", images=[], seed=11)
    [(name, feeds)] = TorchRestorer.reference_log
    expected = verify_module._inputs(ALL_SPECS["fidelity"], PROFILE.env(0), 11)
    assert feeds.keys() == expected.keys()
    for k in feeds:
        np.testing.assert_array_equal(feeds[k], expected[k])


def test_the_detector_is_compared_on_a_face_by_the_faces_it_finds(monkeypatch):
    """On noise the detector finds no face, so with images it is fed the first one as the face pipeline
    feeds a frame; each backend's outputs and PyTorch's go to detector_difference, whose pixels are the
    backend's detector_px; no face found by PyTorch is a skip, not a pass."""
    from flipnet_rt.engine.spec import DETECTOR

    compared, results = [], [0.0, 0.75, None]

    def difference(ours, ref):
        compared.append((ours, ref))
        return results.pop(0)

    monkeypatch.setattr(verify_module, "detector_difference", difference)
    good, off, blind = EngineBackend(0.0, 0), EngineBackend(1e-6, 0), EngineBackend(0.0, 0)
    _setup(
        monkeypatch,
        networks=(DETECTOR,),
        backends=[("onnxruntime-cpu", True, good), ("tensorrt", True, off), ("torch", True, blind)],
    )
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (12, 9, 3), dtype=np.uint8), np.full((8, 8, 3), 50, np.uint8)]
    report = verify_module.verify("E", "m", images=images, seed=11)
    [(name, feeds)] = TorchRestorer.reference_log
    assert name == DETECTOR and list(feeds) == ["input"]
    np.testing.assert_array_equal(feeds["input"], verify_module._detector_inputs(images[0])["input"])
    ref = _outputs(DETECTOR, feeds)
    assert len(compared) == 3
    for (ours, theirs), backend in zip(compared, (good, off, blind)):
        assert list(theirs) == list(ours) == ["loc", "conf", "landmarks"]
        for k in ours:
            np.testing.assert_array_equal(theirs[k], ref[k])
            np.testing.assert_array_equal(ours[k], backend.run(DETECTOR, feeds)[k])
    assert report.detector_px == {"onnxruntime-cpu": 0.0, "tensorrt": 0.75}
    assert [s for s in report.skipped if "end-to-end" not in s] == [
        "torch detector faces: PyTorch found no face in the verify image to compare"
    ]
    assert [(c.backend, c.network, c.passed) for c in report.checks] == [
        ("onnxruntime-cpu", DETECTOR, True),
        ("tensorrt", DETECTOR, True),
        ("torch", DETECTOR, True),
    ]
    assert not report.passed  # every output within its relative limit, but tensorrt's faces 0.75 px off
    # without images: the seeded draws at the profile's smallest shape, as for the other networks
    _setup(monkeypatch, networks=(DETECTOR,), backends=[])
    verify_module.verify("E", "m", images=[], seed=11)
    [(name, feeds)] = TorchRestorer.reference_log
    expected = verify_module._inputs(ALL_SPECS[DETECTOR], PROFILE.env(0), 11)
    assert feeds.keys() == expected.keys()
    np.testing.assert_array_equal(feeds["input"], expected["input"])
