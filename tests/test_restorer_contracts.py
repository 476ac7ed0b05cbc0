"""Restorer and DiffusionCore at their edges: exact errors that name the fix, empty batches, seeds,
variants and closing (issue 19: the restorer group's fast tests)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import face_like, restorer_latents

from flipnet_rt.config.options import Mode, SamplingOptions, image_seed
from flipnet_rt.runtime.core import DiffusionCore


def _backend(*names):
    return SimpleNamespace(name="stand-in", specs=dict.fromkeys(names))


def _error(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def test_a_backend_without_the_networks_is_refused_naming_them(tiny_config):
    assert _error(lambda: DiffusionCore(_backend("unet", "vae_encoder"), tiny_config, {})) == (
        "the stand-in backend has no unet_cond, unet_input, vae_decoder network; export them with "
        "`flipnet-rt export` (it has unet, vae_encoder)"
    )
    assert _error(
        lambda: DiffusionCore(
            _backend("unet_cond", "unet_input", "vae_encoder", "vae_decoder"), tiny_config, {}, cond_cache=False
        )
    ) == (
        "the stand-in backend has no unet network (drop --no-cond-cache); export them with `flipnet-rt export` "
        "(it has unet_cond, unet_input, vae_encoder, vae_decoder)"
    )
    assert _error(lambda: DiffusionCore(_backend("unet", "vae_decoder"), tiny_config, {}, cond_cache=False)) == (
        "the stand-in backend has no vae_encoder network; export them with `flipnet-rt export` "
        "(it has unet, vae_decoder)"
    )


def test_core_input_errors(tiny_restorer, tiny_config):
    core, r = tiny_restorer.core, tiny_config.resolution
    options = SamplingOptions.from_config(tiny_config, steps=1)
    bad = np.zeros((1, 3, r // 2, r // 2), np.float32)
    assert _error(lambda: core.run_host(bad, Mode.RESTORE, options, [0])) == (
        f"pixels: expected float [B, 3, {r}, {r}], got float32 (1, 3, {r // 2}, {r // 2})"
    )
    assert _error(lambda: core.run_host(np.zeros((3, r, r), np.float32), Mode.RESTORE, options, [0])).startswith(
        f"pixels: expected float [B, 3, {r}, {r}], got float32 (3, {r}, {r})"
    )
    good = np.zeros((2, 3, r, r), np.float32)
    assert _error(lambda: core.run_host(good, Mode.RESTORE, options, [0])) == "seeds: 1 given for 2 images"
    assert _error(lambda: core.latents(good, Mode.RESTORE, SamplingOptions(steps=0), [0, 1])) == (
        "steps: 0; use 1 or more"
    )  # options are validated against the model first


def test_restorer_seeds_and_empty_batches(tiny_restorer, tiny_config):
    options = SamplingOptions.from_config(tiny_config, steps=1, seed=9)
    assert tiny_restorer.restore([], options) == [] and tiny_restorer.degrade([]) == []
    faces = [face_like(tiny_config.resolution, i) for i in range(2)]
    assert _error(lambda: tiny_restorer.restore(faces, options, seeds=[1])) == "seeds: 1 given for 2 images"
    # the default seeds are image_seed(options.seed, i): giving them explicitly changes nothing
    default = tiny_restorer.restore(faces, options)
    explicit = tiny_restorer.restore(faces, options, seeds=[image_seed(9, i) for i in range(2)])
    for a, b in zip(default, explicit):
        np.testing.assert_array_equal(a, b)
    latents = restorer_latents(tiny_restorer, faces, options)
    again = restorer_latents(tiny_restorer, faces, options, seeds=[image_seed(9, 0), image_seed(9, 1)])
    np.testing.assert_array_equal(latents, again)
    assert latents.dtype == np.float32 and latents.shape[:2] == (2, tiny_config.latent_channels)


def test_options_default_to_the_model_and_take_overrides(tiny_restorer, tiny_config):
    assert tiny_restorer.options() == SamplingOptions.from_config(tiny_config)
    assert tiny_restorer.options(steps=3, seed=4) == SamplingOptions.from_config(tiny_config, steps=3, seed=4)


def test_variants_share_the_backend(tiny_restorer):
    assert tiny_restorer.cond_cache is True
    joint = tiny_restorer.variant(cond_cache=False)
    assert joint.backend is tiny_restorer.backend and joint.config is tiny_restorer.config
    assert joint.cond_cache is False and joint.core.prompts.keys() == tiny_restorer.core.prompts.keys()
    assert tiny_restorer.variant().cond_cache is True and joint.variant().cond_cache is False
    timer = SimpleNamespace(stage=lambda name: None)
    assert tiny_restorer.variant(timer=timer).core.timer is timer


def test_closing_closes_the_backend(tiny_config):
    closed = []
    backend = SimpleNamespace(
        name="stand-in",
        specs=dict.fromkeys(("unet_cond", "unet_input", "vae_encoder", "vae_decoder")),
        from_numpy=lambda a, dtype=None: a,
        close=lambda: closed.append(1),
    )
    from flipnet_rt.runtime.restorer import Restorer

    with Restorer(backend, tiny_config, {"restore": np.zeros((2, 3))}) as restorer:
        assert restorer.core.prompts["restore"].dtype == np.float32
    assert closed == [1]
    with DiffusionCore(backend, tiny_config, {}) as core:
        assert core.cond_cache is True
    assert closed == [1, 1]


def test_degrade_is_its_own_mode_and_takes_the_seeds_given(tiny_restorer, tiny_config):
    """Degrading uses the degrade prompt and no identity tokens: not the same as restoring without
    guidance; and the seeds given are the seeds used."""
    faces = [face_like(tiny_config.resolution, 3)]
    options = SamplingOptions.from_config(tiny_config, steps=2, guidance=1.0, color_fix=0)
    degraded = tiny_restorer.degrade(faces, options)[0]
    assert not np.array_equal(degraded, tiny_restorer.restore(faces, options)[0])
    seeded = tiny_restorer.degrade(faces, options, seeds=[12345])[0]
    assert not np.array_equal(seeded, degraded)
    np.testing.assert_array_equal(seeded, tiny_restorer.degrade(faces, options, seeds=[12345])[0])


def test_load_hands_every_setting_to_the_backend_choice(monkeypatch, tiny_config):
    import flipnet_rt.backends.select as select
    from flipnet_rt.backends.registry import BackendOptions
    from flipnet_rt.config.precision import Precision
    from flipnet_rt.runtime.restorer import Restorer

    seen = {}
    backend = SimpleNamespace(
        name="stand-in",
        specs=dict.fromkeys(("unet", "unet_cond", "unet_input", "vae_encoder", "vae_decoder")),
        from_numpy=lambda a, dtype=None: a,
    )

    def select_backend(kind, **kwargs):
        seen.update(kind=kind, **kwargs)
        return SimpleNamespace(backend=backend, config=tiny_config, prompts={"restore": np.zeros((2, 3))})

    monkeypatch.setattr(select, "select_backend", select_backend)
    timer = SimpleNamespace(stage=lambda name: None)
    restorer = Restorer.load(
        "random:tiny",
        backend="onnxruntime",
        device="cpu",
        options=BackendOptions(precision="fp16", cuda_graphs=True, compile=True, threads=3, low_memory=True),
        cond_cache=False,
        engine_dir="E",
        timer=timer,
    )
    assert seen == dict(
        kind="onnxruntime",
        model="random:tiny",
        engine_dir="E",
        device="cpu",
        options=BackendOptions(precision=Precision.FP16, cuda_graphs=True, compile=True, threads=3, low_memory=True),
    )
    assert restorer.backend is backend and restorer.config is tiny_config and restorer.cond_cache is False
    assert restorer.core.timer is timer and set(restorer.core.prompts) == {"restore"}
    assert Restorer.load("m").cond_cache is True  # the condition cache is on unless turned off
    assert seen == dict(
        kind="auto",
        model="m",
        engine_dir=None,
        device=None,
        options=None,
    )


def test_every_stage_is_timed_under_the_names_bench_reads(tiny_restorer, tiny_config):
    """`flipnet-rt bench` splits a restore by these stage names (bench/runner.py STAGES): each stage
    is timed under its name, as many times as it runs, and the UNet steps inside "sampling"."""
    from flipnet_rt.runtime.profiling import StageTimer

    timer = StageTimer()
    timed = tiny_restorer.variant(timer=timer)
    options = SamplingOptions.from_config(tiny_config, sampler="ddim", steps=3, guidance=2.0, color_fix=2)
    timed.restore([face_like(tiny_config.resolution, 0)], options)
    counts = {name: len(values) for name, values in timer.records.items()}
    # preprocessing and postprocessing twice: the restorer's fit / colour fix, the core's upload / download
    assert counts == {
        "preprocessing": 2,
        "vae_encoder": 1,
        "face_encoder": 1,
        "unet_cond": 1,
        "unet_input": 3,
        "sampling": 1,
        "vae_decoder": 1,
        "postprocessing": 2,
    }
    assert sum(timer.records["unet_input"]) <= timer.records["sampling"][0]

    timer.reset()
    joint = tiny_restorer.variant(cond_cache=False, timer=timer)
    joint.degrade([face_like(tiny_config.resolution, 0)], options)  # no face encoder, no guidance
    assert {name: len(values) for name, values in timer.records.items()} == {
        "preprocessing": 2,
        "vae_encoder": 1,
        "unet": 3,
        "sampling": 1,
        "vae_decoder": 1,
        "postprocessing": 2,
    }
    assert tiny_restorer.core.timer is None  # the variant's timer is its own


def test_eta_reaches_the_sampler(tiny_restorer, tiny_config):
    """DDIM's eta > 0 draws fresh noise every step from each image's generator: a different image
    from eta 0, the same image for the same seed."""
    faces = [face_like(tiny_config.resolution, 1)]
    base = SamplingOptions.from_config(tiny_config, sampler="ddim", steps=3, color_fix=0)
    deterministic = restorer_latents(tiny_restorer, faces, base, seeds=[5])
    noisy = restorer_latents(tiny_restorer, faces, dataclasses.replace(base, eta=1.0), seeds=[5])
    assert np.abs(noisy - deterministic).max() > 1e-3
    np.testing.assert_array_equal(
        noisy, restorer_latents(tiny_restorer, faces, dataclasses.replace(base, eta=1.0), seeds=[5])
    )


def test_device_timesteps_are_made_once_and_on_demand():
    from flipnet_rt.runtime.core import device_timesteps

    made = []

    def make(t):
        made.append(t)
        return np.full(2, t, np.float32)

    table = device_timesteps([999, 500, 500, 1], make)
    assert made == [999, 500, 1]  # each listed timestep once, in order
    np.testing.assert_array_equal(table[500], [500, 500])
    np.testing.assert_array_equal(table[250], [250, 250])  # not listed: made on first use, then kept
    assert table[250] is table[250] and made == [999, 500, 1, 250]


def test_core_returns_float32_images_that_the_next_run_does_not_overwrite():
    """ONNX Runtime's backend binds outputs to buffers it reuses for every call of the same shape
    (OnnxRuntimeBackend.output_buffers): the core must hand back a copy, or a caller holding the first
    batch's images would see them overwritten by the second's."""
    from pathlib import Path

    from flipnet_rt.runtime.restorer import Restorer

    engine = Path(__file__).resolve().parents[1] / "models" / "demo-onnx"
    with Restorer.load(str(engine), backend="onnxruntime", device="cpu") as restorer:
        r, options = restorer.config.resolution, restorer.options(steps=1)
        first_pixels = np.zeros((1, 3, r, r), np.float32)
        first = restorer.core.run_host(first_pixels, Mode.RESTORE, options, [0])
        kept = first.copy()
        second = restorer.core.run_host(np.full_like(first_pixels, 0.5), Mode.RESTORE, options, [0])
    assert first.dtype == np.float32 and second.dtype == np.float32
    assert np.abs(second - kept).max() > 1e-3  # the two runs differ, so an alias would show
    np.testing.assert_array_equal(first, kept)


@pytest.fixture(scope="module")
def demo_core():
    """The shipped demo engine's core on ONNX Runtime CPU (its backend reuses output buffers)."""
    from pathlib import Path

    from flipnet_rt.runtime.restorer import Restorer

    engine = Path(__file__).resolve().parents[1] / "models" / "demo-onnx"
    with Restorer.load(str(engine), backend="onnxruntime", device="cpu") as restorer:
        yield restorer.core, restorer.options()


def test_run_device_is_run_host_on_the_backends_arrays(demo_core):
    core, options = demo_core
    rng = np.random.default_rng(0)
    pixels = rng.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    guided = dataclasses.replace(options, guidance=2.0)  # the mode reaches the core: guidance is restore's
    for mode, opts in ((Mode.RESTORE, options), (Mode.RESTORE, guided), (Mode.DEGRADE, options)):
        want = core.run_host(pixels, mode, opts, [3, 4])
        got = np.array(core.run_device(pixels, mode, opts, [3, 4]), np.float32)
        err = float(np.abs(want - got).max())
        print(f"run_device vs run_host, {mode.value}, guidance {opts.guidance}: max error {err:.2e}")
        assert err == 0.0
    assert not np.array_equal(got, core.run_device(pixels, Mode.RESTORE, options, [3, 5])[:2])  # seeds reach it
    with pytest.raises(ValueError, match=r"^pixels: expected float \[B, 3, 64, 64\], got float32 \(2, 3, 32, 32\)$"):
        core.run_device(pixels[:, :, :32, :32], Mode.RESTORE, options, [3, 4])
    with pytest.raises(ValueError, match=r"^pixels: expected float \[B, 3, 64, 64\], got float32 \(3, 64, 64\)$"):
        core.run_device(pixels[0], Mode.RESTORE, options, [3])
    with pytest.raises(ValueError, match="^seeds: 1 given for 2 images$"):
        core.run_device(pixels, Mode.RESTORE, options, [3])
    with pytest.raises(ValueError, match="steps"):  # the options are validated
        core.run_device(pixels, Mode.RESTORE, dataclasses.replace(options, steps=0), [3, 4])


def test_run_device_returns_the_callers_own_array(demo_core):
    """The next call must not change what run_device returned (a worker thread of the device frame
    path reads it after the core's lock is released)."""
    core, options = demo_core
    rng = np.random.default_rng(1)
    a, b = (rng.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32) for _ in range(2))
    first = core.run_device(a, Mode.RESTORE, options, [1, 2])
    kept = np.array(first, copy=True)
    core.run_device(b, Mode.RESTORE, options, [1, 2])
    np.testing.assert_array_equal(first, kept)


def test_run_device_times_the_stages_bench_reads(demo_core):
    """run_device runs the same networks as run_host, each under its name (bench reads them)."""
    from flipnet_rt.runtime.profiling import StageTimer

    core, options = demo_core
    timer = StageTimer()
    timed = DiffusionCore(core.backend, core.config, core.prompts, timer=timer)
    timed.run_device(np.zeros((1, 3, 64, 64), np.float32), Mode.RESTORE, options, [0])
    assert {"vae_encoder", "face_encoder", "unet_cond", "unet_input", "vae_decoder", "sampling"} <= set(timer.totals())


class _DetectorBackend:
    """A backend stand-in with the detector network: records the dtypes its feeds are made in and
    hands back the same output buffers every call (as ONNX Runtime's backend reuses its per-shape ones)."""

    name = "stand-in"

    def __init__(self, names=("unet_cond", "unet_input", "vae_encoder", "vae_decoder", "detector")) -> None:
        self.specs = dict.fromkeys(names)
        self.dtypes: list[str | None] = []
        self.buffers = {
            "loc": np.zeros((1, 42, 4), np.float32),
            "conf": np.zeros((1, 42, 2), np.float32),
            "landmarks": np.zeros((1, 42, 10), np.float32),
        }

    def from_numpy(self, array, dtype=None):
        self.dtypes.append(dtype)
        return array.astype(dtype or np.float16)  # the engine's own float dtype: float16 here

    def to_numpy(self, array):
        return array

    def concat(self, arrays, axis=0):
        return np.concatenate(arrays, axis=axis)

    def run(self, network, feeds):
        assert network == "detector" and feeds["input"].dtype == np.float32
        for k, buffer in self.buffers.items():
            buffer[...] = feeds["input"].sum() + len(k)
        return self.buffers


def test_the_detector_runs_on_the_cores_backend_in_float32_and_comes_back_as_copies(tiny_config):
    """Issue 29: the engine's detector network on the restorer's backend: its input in float32 on any
    engine (pixel-scale values), its outputs copies of the backend's reused buffers, and a call that does
    not wait for a restoration holding the core (its own lock)."""
    import threading

    from flipnet_rt.runtime.restorer import Restorer

    backend = _DetectorBackend()
    core = DiffusionCore(backend, tiny_config, {})
    restorer = Restorer(backend, tiny_config, {})
    assert core.has_detector and restorer.detector_network() == restorer.core.detect_host
    frames = np.ones((1, 3, 32, 32), np.float32)
    done = []
    with core._lock:  # a restoration in progress
        thread = threading.Thread(target=lambda: done.append(core.detect_host(frames)))
        thread.start()
        thread.join(timeout=10)
    assert done, "detect_host waited for the sampling lock"
    loc, conf, landmarks = done[0]
    assert backend.dtypes[-1] == "float32"
    for name, array in zip(("loc", "conf", "landmarks"), (loc, conf, landmarks)):
        assert array.dtype == np.float32 and not np.shares_memory(array, backend.buffers[name])
        np.testing.assert_array_equal(array, 32 * 32 * 3 + len(name))
    device = core.detect_device(frames)
    assert set(device) == {"loc", "conf", "landmarks"}
    assert all(not np.shares_memory(device[k], backend.buffers[k]) for k in device)
    np.testing.assert_array_equal(device["conf"], conf)
    without = _DetectorBackend(names=("unet_cond", "unet_input", "vae_encoder", "vae_decoder"))
    assert not DiffusionCore(without, tiny_config, {}).has_detector
    assert Restorer(without, tiny_config, {}).detector_network() is None


def test_the_torch_backend_runs_the_shipped_detector(tiny_restorer):
    """The torch backend's detector network is the PyTorch port of the shipped RetinaFace."""
    torch = pytest.importorskip("torch")
    from flipnet_rt.models.retinaface import load_retinaface

    x = np.random.default_rng(0).uniform(-123, 152, (2, 3, 64, 96)).astype(np.float32)
    loc, conf, landmarks = tiny_restorer.core.detect_host(x)
    with torch.inference_mode():
        want = [t.numpy() for t in load_retinaface()(torch.from_numpy(x))]
    for got, ref in zip((loc, conf, landmarks), want):
        np.testing.assert_allclose(got, ref, atol=1e-5)
    assert loc.shape == (2, 42 * 2 * 3, 4)


class _FidelityBackend:
    """A backend stand-in with the fidelity network: its weight is a known function of its feeds,
    written into one reused output buffer (as ONNX Runtime's backend does)."""

    name = "stand-in"
    specs = dict.fromkeys(("unet_cond", "unet_input", "vae_encoder", "vae_decoder", "fidelity"))

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.buffer = np.zeros(0, np.float32)

    def from_numpy(self, array, dtype=None):
        return array.astype(dtype or np.float32)

    def to_numpy(self, array):
        return array

    def concat(self, arrays, axis=0):
        return np.concatenate(arrays, axis=axis)

    def run(self, network, feeds):
        self.calls.append((network, {k: (v.dtype, v.shape) for k, v in feeds.items()}))
        # weight per face: the mean of the input minus the mean of the restoration, so both feeds count
        self.buffer = (feeds["image"].mean(axis=(1, 2, 3)) - feeds["restored"].mean(axis=(1, 2, 3))).astype(np.float32)
        return {"weight": self.buffer}


def test_the_fidelity_estimator_gets_both_faces_as_model_pixels_and_gives_a_copy(tiny_config):
    """Issue 25's estimator call through the restorer and the core: uint8 faces at the model's size
    become [-1, 1] float32 NCHW feeds ``image`` (the input) and ``restored``, the weights come back as
    float32 copies of the backend's buffer; wrong counts or shapes are one-line errors naming both."""
    from flipnet_rt.runtime.restorer import Restorer

    backend = _FidelityBackend()
    restorer = Restorer(backend, tiny_config, {})
    r = tiny_config.resolution
    inputs = [np.full((r, r, 3), 255, np.uint8), np.zeros((r, r, 3), np.uint8)]
    restored = [np.zeros((r, r, 3), np.uint8), np.full((r, r, 3), 255, np.uint8)]
    weights = restorer.fidelity(inputs, restored)
    assert weights.dtype == np.float32 and weights.tolist() == [2.0, -2.0]  # 1 - (-1), -1 - 1: [-1, 1] pixels
    assert not np.shares_memory(weights, backend.buffer)
    assert backend.calls == [
        ("fidelity", {"image": (np.float32, (2, 3, r, r)), "restored": (np.float32, (2, 3, r, r))})
    ]
    empty = restorer.fidelity([], [])
    assert empty.shape == (0,) and empty.dtype == np.float32
    with pytest.raises(ValueError, match=r"^fidelity: 2 inputs and 1 restorations$"):
        restorer.fidelity(inputs, restored[:1])
    with pytest.raises(ValueError, match=rf"^fidelity: expected uint8 \[{r}, {r}, 3\] faces, got shapes"):
        restorer.fidelity(inputs, [np.zeros((r + 1, r, 3), np.uint8)] * 2)
    core = restorer.core
    with pytest.raises(ValueError, match=r"^fidelity: inputs \(1, 3, 4, 4\) and restorations \(2, 3, 4, 4\) differ$"):
        core.fidelity_host(np.zeros((1, 3, 4, 4), np.float32), np.zeros((2, 3, 4, 4), np.float32))
    from flipnet_rt.runtime.profiling import StageTimer

    core.timer = StageTimer()  # what flipnet-rt bench reads: the conversion and the network, by name
    restorer.fidelity(inputs, restored)
    assert set(core.timer.totals()) == {"preprocessing", "fidelity"}
    pixels = np.ones((2, 3, r, r), np.float32)
    device = core.fidelity_device(pixels, -pixels)
    assert backend.calls[-1][0] == "fidelity"
    np.testing.assert_array_equal(device, [2.0, 2.0])
    assert not np.shares_memory(device, backend.buffer)
    assert core.has_fidelity and not DiffusionCore(_DetectorBackend(), tiny_config, {}).has_fidelity
