"""The device frame path's CUDA-side Python (TorchKernels, CupyKernels) on the CPU, over STAND-INS.

Device arrays are torch CPU tensors (the stream handle from a replaced ``torch.cuda.current_stream``)
or the stand-in CuPy's (tests/backends/cupy_standin.py); ``flipnet_rt._native``'s CUDA functions
are stood in for by :class:`StandinCudaKernels`, which checks each call's arguments as the nanobind
signatures in native/python/module.cpp would (dtype, dimensions, C-contiguity, matrices on the host,
the stream handle) and runs the host kernels (what HostKernels runs) on the same memory. So this
checks the bookkeeping: argument order, shapes, dtypes, in-place writes, the current stream reaching
every kernel. It says nothing about CUDA, which only a GPU shows (tests/faces/test_device_gpu.py).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from flipnet_rt.faces import kernels
from flipnet_rt.imaging import native

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))
from cupy_standin import standin_cupy  # noqa: E402

STREAM = 0x5150


class StandinCudaKernels:
    """``flipnet_rt._native`` built with CUDA, as far as its Python signatures go; host kernels inside."""

    cuda = True

    def __init__(self) -> None:
        self.streams: list[tuple[str, int]] = []

    @staticmethod
    def _host(array, dtype, ndim: int, what: str) -> np.ndarray:
        host = array.numpy() if hasattr(array, "numpy") else np.asarray(array)  # the same memory
        assert host.dtype == dtype and host.ndim == ndim, f"{what}: {host.dtype} {host.shape}"
        assert host.flags.c_contiguous, f"{what}: not C-contiguous"
        return host

    @staticmethod
    def _matrices(m) -> np.ndarray:
        assert isinstance(m, np.ndarray) and m.dtype == np.float64 and m.shape[1:] == (2, 3), m
        return m

    def warp_crop_cuda(self, frame, matrices, out, border, border_value, stream=0):
        self.streams.append(("warp", stream))
        host = self._host(out, np.float32, 4, "out")
        mode = {4: "reflect", 0: "constant"}[border]
        assert tuple(border_value) == kernels.border_args(mode)[1]
        host[...] = kernels.warp_crop(
            self._host(frame, np.uint8, 3, "frame"), list(self._matrices(matrices)), host.shape[2], mode
        )

    def paste_faces_cuda(self, frame, faces, matrices, stream=0):
        self.streams.append(("paste", stream))
        kernels.paste_faces(
            self._host(frame, np.uint8, 3, "frame"),
            list(self._host(faces, np.uint8, 4, "faces")),
            list(self._matrices(matrices)),
            inplace=True,
        )

    def wavelet_color_fix_cuda(self, image, reference, out, levels, stream=0):
        self.streams.append(("colour", stream))
        host = self._host(out, np.float32, 4, "out")
        host[...] = native.wavelet_color_fix(
            self._host(image, np.float32, 4, "image"), self._host(reference, np.float32, 4, "reference"), levels
        )


@pytest.fixture
def torch_kernels(monkeypatch):
    import torch

    from flipnet_rt.faces.device import TorchKernels

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=STREAM))
    return TorchKernels(StandinCudaKernels(), "cpu"), torch.from_numpy


@pytest.fixture
def cupy_kernels(monkeypatch):
    from flipnet_rt.faces.device import CupyKernels

    cupy = standin_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    kernels = CupyKernels(StandinCudaKernels(), 0)
    with cupy.cuda.Stream() as stream:  # the kernels must take the current stream's handle
        kernels.expected_stream = stream.ptr
        yield kernels, cupy.asarray


@pytest.fixture(scope="module")
def scene():
    from synthetic.video import face_scene, noisy

    image = noisy(face_scene((200, 120), eye_distance=15.0, faces=2)[0], 3.0, np.random.default_rng(0))
    affines = np.stack([[[1.0, 0.05, -30.0], [-0.05, 1.0, -25.0]], [[0.9, 0.0, -110.0], [0.0, 0.9, -20.0]]])
    return image, affines


@pytest.mark.parametrize("which", ["torch_kernels", "cupy_kernels"])
def test_cuda_kernels_python_side_keeps_the_host_contract(request, scene, which):
    from flipnet_rt.faces.device import HostKernels

    kernels, to_device = request.getfixturevalue(which)
    stream = getattr(kernels, "expected_stream", STREAM)
    host = HostKernels()
    image, affines = scene
    frame = kernels.upload(image)
    assert not np.shares_memory(np.asarray(kernels.download(frame)), image)
    np.testing.assert_array_equal(kernels.download(frame), image)
    for border in ("reflect", "constant"):
        crops = kernels.crops(frame, affines, 64, border)
        np.testing.assert_array_equal(np.asarray(crops), host.crops(image, affines, 64, border))
    crops = kernels.crops(frame, affines, 64, "reflect")
    rng = np.random.default_rng(1)
    out = rng.uniform(-1.2, 1.2, (2, 3, 64, 64)).astype(np.float32)
    half = np.asarray(kernels.float32(to_device(out.astype(np.float16))))
    np.testing.assert_array_equal(half, out.astype(np.float16).astype(np.float32))
    assert half.dtype == np.float32
    cast = np.asarray(kernels.cast(crops, to_device(out[:1].astype(np.float16))))
    np.testing.assert_array_equal(cast, np.asarray(crops).astype(np.float16))
    fixed = kernels.color_fix(to_device(out), crops, 3)
    np.testing.assert_array_equal(np.asarray(fixed), host.color_fix(out, host.crops(image, affines, 64, "reflect"), 3))
    faces = kernels.to_faces(to_device(out))
    np.testing.assert_array_equal(np.asarray(faces), host.to_faces(out))
    with pytest.raises(
        ValueError,
        match=r"^to_uint8: the model's output contains NaN \(a numerically broken "
        r"engine: rebuild it, or run in fp32\)$",
    ):
        kernels.to_faces(to_device(np.full((1, 3, 4, 4), np.nan, np.float32)))
    flags: list = []  # the device path's way: a flag per batch, read once with the frames
    kernels.to_faces(to_device(out), flags)
    kernels.check_nan(flags)
    kernels.to_faces(to_device(np.full((1, 3, 4, 4), np.nan, np.float32)), flags)
    with pytest.raises(ValueError, match=r"^to_uint8: the model's output contains NaN"):
        kernels.check_nan(flags)
    # the fidelity estimator's input (uint8 faces, or float32 holding whole grey levels) and the blend
    # by its weights (issue 25), as the host kernels make them
    mine = host.to_faces(out)
    np.testing.assert_array_equal(np.asarray(kernels.to_pixels(faces)), host.to_pixels(mine))
    whole = kernels.to_pixels(to_device(mine.astype(np.float32)))
    np.testing.assert_array_equal(np.asarray(whole), host.to_pixels(mine))
    other = host.to_faces(out[::-1].copy())
    for weights in (np.array([0.0, 0.3], np.float32), to_device(np.array([1.0, 0.3], np.float64))):
        mixed = np.asarray(kernels.blend(faces, to_device(other), weights))
        want = host.blend(mine, other, np.asarray(weights))
        assert mixed.dtype == np.uint8 and mixed.flags.c_contiguous and want.dtype == np.uint8
        np.testing.assert_array_equal(mixed, want)
    kernels.paste(frame, faces, affines)
    want = host.upload(image)
    host.paste(want, host.to_faces(out), affines)
    np.testing.assert_array_equal(kernels.download(frame), want)
    assert kernels.nat.streams and {s for _, s in kernels.nat.streams} == {stream}
    assert [k for k, _ in kernels.nat.streams] == ["warp"] * 3 + ["colour", "paste"]
    if which == "cupy_kernels":  # every CuPy call inside the arrays' device (0 here), not "the current one"
        devices = [entry[1] for entry in sys.modules["cupy"].log if entry[0] == "device"]
        assert devices and set(devices) == {0}


@pytest.fixture(scope="module")
def tiny_estimating_restorer():
    """random:tiny with a (seeded, random) fidelity estimator, on the torch backend: --fidelity auto
    estimates each face's weight."""
    import torch

    from flipnet_rt.backends.torch import TorchBackend
    from flipnet_rt.models import PROMPT_KINDS, random_model
    from flipnet_rt.models.fidelity import FidelityNet
    from flipnet_rt.runtime.restorer import Restorer

    model = random_model("tiny")  # its own: the session's tiny_model stays without an estimator
    torch.manual_seed(3)
    model.fidelity = FidelityNet().eval()
    prompts = {k: model.prompt(k).numpy() for k in PROMPT_KINDS}
    return Restorer(TorchBackend(model), model.config, prompts)


def test_whole_frames_on_torch_tensors_equal_the_host_path(torch_kernels, tiny_restorer, tiny_estimating_restorer):
    """DeviceFrames over TorchKernels on the torch backend's (CPU) tensors: the same frames as the
    host path of FaceRestorer, bit for bit (the stand-in runs the host path's kernels), and the same
    fidelity weights: none, a fixed one, or the estimator's (its weights come back as tensors)."""
    from flipnet_rt.faces.align import template
    from flipnet_rt.faces.device import DeviceFrames
    from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer
    from flipnet_rt.faces.types import Face

    kernels, _ = torch_kernels
    r = tiny_restorer.config.resolution
    rng = np.random.default_rng(2)
    frames, faces, seeds = [], [], []
    for count in (2, 0, 1):
        frames.append(rng.integers(0, 256, (3 * r, 5 * r, 3), dtype=np.uint8))
        points = [0.9 * template(r) + (r * (1 + 2 * j) + 0.3, r + 0.6) for j in range(count)]  # S = R
        faces.append([Face(np.r_[p.min(0) - 4, p.max(0) + 4], 1.0, p) for p in points])
        seeds.append([10 * count + j for j in range(count)])
    # auto on random:tiny: no estimator (W = 0); 0.4: the blend on the device; auto with the estimator
    cases = [
        (tiny_restorer, "auto", "none"),
        (tiny_restorer, 0.4, "fixed"),
        (tiny_estimating_restorer, "auto", "estimator"),
    ]
    for restorer, fidelity, source in cases:
        options = FaceOptions(max_batch=2, fidelity=fidelity)  # the same batches on both paths: torch's CPU
        host = FaceRestorer(restorer, options=options, frame_path="host")  # kernels vary with the batch
        device = FaceRestorer(restorer, options=options, frame_path="host")
        # what frame_path chooses on a GPU
        device.device_frames = DeviceFrames(restorer.core, kernels, "reflect", 2, device.fidelity)
        for sampling in (restorer.options(color_fix=0), restorer.options(color_fix=2)):
            host.sampling = device.sampling = sampling
            want = host.restore_faces(frames, faces, seeds)
            got = device.restore_faces(frames, faces, seeds)
            for (a, ra), (b, rb), image in zip(want, got, frames):
                np.testing.assert_array_equal(a, b)
                assert all(x.crop_size == r and x.output is None for x in rb)
                assert [x.fidelity for x in ra] == [x.fidelity for x in rb]
                assert {x.fidelity_source for x in rb} <= {source}
                assert (a != image).any() == bool(ra)
        weights = [x.fidelity for _, rb in got for x in rb]
        print(f"fidelity {fidelity} ({source}): weights {np.round(weights, 4).tolist()}")
        assert (len(set(weights)) > 1) == (source == "estimator")  # the estimator's differ per face


def test_track_filtered_crops_on_torch_tensors_equal_the_host_paths(torch_kernels, tiny_restorer):
    """Video's per-track filter of the input crops (flipnet_rt/video/stabilise.py): on the device path
    it runs on the device arrays in DeviceFrames (TrackCrops), on the host path on the crops VideoRestorer
    hands in (aligned=); over 4 noisy frames of two still faces the frames are the same, bit for bit,
    and differ from unfiltered ones from the second frame on."""
    from flipnet_rt.faces.align import template
    from flipnet_rt.faces.device import DeviceFrames
    from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer
    from flipnet_rt.faces.types import Face
    from flipnet_rt.video.stabilise import CropStabiliser, TrackCrops

    kernels, _ = torch_kernels
    r = tiny_restorer.config.resolution
    rng = np.random.default_rng(4)
    scene = rng.integers(30, 220, (3 * r, 5 * r, 3)).astype(np.float32)
    scene[: r + r // 2] = 0.0  # a black band over the faces' top half: running means of 0 (and the noise's clip)
    points = [0.9 * template(r) + (r * (1 + 2 * j) + 0.3, r + 0.6) for j in range(2)]  # S = R
    faces = [Face(np.r_[p.min(0) - 4, p.max(0) + 4], 1.0, p) for p in points]
    options = FaceOptions(max_batch=2, fidelity=0.5)
    host = FaceRestorer(tiny_restorer, options=options, frame_path="host")
    device = FaceRestorer(tiny_restorer, options=options, frame_path="host")
    device.device_frames = DeviceFrames(tiny_restorer.core, kernels, "reflect", 2, device.fidelity)
    on_host, on_device = CropStabiliser(), CropStabiliser()
    for t in range(4):
        frame = np.clip(np.rint(scene + rng.normal(0, 4, scene.shape)), 0, 255).astype(np.uint8)
        crops = [on_host(j, host.aligned_crop(frame, f), t) for j, f in enumerate(faces)]
        ((want, _),) = host.restore_faces([frame], [faces], [[5, 6]], aligned=[crops])
        ((got, _),) = device.restore_faces([frame], [faces], [[5, 6]], tracks=TrackCrops(on_device, [[0, 1]], [t]))
        ((plain, _),) = host.restore_faces([frame], [faces], [[5, 6]])
        np.testing.assert_array_equal(want, got)
        assert (t == 0) == np.array_equal(want, plain)  # a track's first crop is its own
    assert on_device.tracks == 2


@pytest.mark.parametrize("which", ["torch_kernels", "cupy_kernels"])
@pytest.mark.parametrize("size", [(60, 100), (70, 130), (480, 800)])
def test_the_detector_input_is_the_hosts(request, scene, which, size):
    """Issue 29: the device path's detector input (a frame shrunk by 2 and by 1.7, and grown 4x) from
    torch tensors and CuPy arrays, as the host kernels (OpenCV) make it, to the grey-level rounding
    OpenCV does on uint8."""
    from flipnet_rt.faces.device import HostKernels
    from flipnet_rt.faces.retinaface import padded

    kernels, upload = request.getfixturevalue(which)
    image = scene[0]
    pad = (padded(size[0]), padded(size[1]))
    host = HostKernels().detector_input([image, image[::-1].copy()], size, pad)
    ours = kernels.detector_input([upload(image), upload(image[::-1].copy())], size, pad)
    ours = np.asarray(ours.numpy() if hasattr(ours, "numpy") else ours)
    assert ours.shape == host.shape == (2, 3, *pad) and ours.dtype == np.float32
    worst = float(np.abs(ours - host).max())
    print(f"{which} {image.shape[:2]} -> {size}: worst difference {worst:.2f} grey levels")
    assert worst < 1.0 and not ours[:, :, size[0] :].any() and not ours[:, :, :, size[1] :].any()
    if which == "cupy_kernels":  # in float32 throughout (the stand-in's arrays are NumPy's: the same sums)
        from flipnet_rt.faces.retinaface import MEAN_BGR, resize_weights

        bgr = np.stack([image, image[::-1]]).astype(np.float32)[..., ::-1].transpose(0, 3, 1, 2)
        rows, cols = resize_weights(image.shape[0], size[0]), resize_weights(image.shape[1], size[1])
        exact = rows @ bgr @ cols.T - MEAN_BGR.reshape(1, 3, 1, 1)
        np.testing.assert_array_equal(ours[:, :, : size[0], : size[1]], exact)


@pytest.mark.parametrize("which", ["torch_kernels", "cupy_kernels"])
def test_the_resize_matrices_go_to_the_device_once_per_size(request, scene, which):
    """A video asks for the same detector input every frame: its two resize matrices (up to 20 MB at
    4K) are uploaded on the first frame only; another size gets its own, and they are not mixed up."""
    from flipnet_rt.faces.device import HostKernels
    from flipnet_rt.faces.retinaface import padded

    kernels, upload = request.getfixturevalue(which)
    kernels.resize_matrix.cache_clear()
    image = scene[0]
    for size in [(60, 100), (60, 100), (40, 100), (60, 100)]:
        pad = (padded(size[0]), padded(size[1]))
        ours = kernels.detector_input([upload(image)], size, pad)
        ours = np.asarray(ours.numpy() if hasattr(ours, "numpy") else ours)
        assert float(np.abs(ours - HostKernels().detector_input([image], size, pad)).max()) < 1.0
    info = kernels.resize_matrix.cache_info()
    assert (info.misses, info.hits, info.maxsize) == (3, 5, 8)  # rows to 60, columns to 100, rows to 40
    if which == "cupy_kernels":  # each matrix made on the kernels' device (0 here), not "the current one"
        devices = [entry[1] for entry in sys.modules["cupy"].log if entry[0] == "device"]
        assert devices and set(devices) == {0}


def test_faces_are_found_on_the_uploaded_torch_frames(torch_kernels, tiny_restorer, astronaut_group):
    """Issue 29: FaceRestorer on the device frame path (TorchKernels over the torch backend's CPU
    tensors) finds faces in the uploaded frames with the engine's detector network: the faces the host
    path finds, within verify's 0.5 px, each frame uploaded once for detection and restoration."""
    from flipnet_rt.faces.detectors import load_detector
    from flipnet_rt.faces.device import DeviceFrames
    from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer

    kernels, _ = torch_kernels
    uploads = []
    upload = kernels.upload
    kernels.upload = lambda frame: uploads.append(frame.shape) or upload(frame)
    detector = load_detector("retinaface", network=tiny_restorer.detector_network())
    import cv2

    image = cv2.resize(astronaut_group[0], (1920, 1080), interpolation=cv2.INTER_LINEAR)  # shrunk to 1280 to detect
    images = [image, np.ascontiguousarray(image[::-1, ::-1])]
    host = FaceRestorer(tiny_restorer, detector, FaceOptions(), frame_path="host")
    device = FaceRestorer(tiny_restorer, detector, FaceOptions(), frame_path="host")
    device.device_frames = DeviceFrames(tiny_restorer.core, kernels, "reflect", 0, device.fidelity)
    assert device._detects_on_device(images) and not host._detects_on_device(images)
    want = [host.detect(im) for im in images]
    got = device.restore_images(images, [3, 4])
    assert len(uploads) == 2  # once per frame: detected and (the faces the model's size) restored there
    for faces, (_, results) in zip(want, got):
        assert len(faces) == len(results) == 3
        px = max(float(np.abs(f.landmarks - r.face.landmarks).max()) for f, r in zip(faces, results))
        print(f"device vs host detection: worst landmark difference {px:.3f} px")
        assert px <= 0.5


def test_device_detection_with_the_host_kernels_is_the_host_detection(tiny_restorer, astronaut_group):
    """DeviceFrames.detect over HostKernels (ONNX Runtime on the CPU takes this path; here a core whose
    detect_device is the tiny torch core's detect_host, numpy in and out as on ONNX Runtime): one
    frame, not square (padded to 736 x 1280), every face given the second look (confirm_below 1),
    which cuts its windows from the host frame: the faces RetinaFaceDetector.detect finds, to the bit;
    a detector input that does not have the size asked for is refused."""
    import cv2

    from flipnet_rt.faces.device import DeviceFrames, HostKernels
    from flipnet_rt.faces.retinaface import RetinaFaceConfig, RetinaFaceDetector

    detector = RetinaFaceDetector(RetinaFaceConfig(confirm_below=1.0), network=tiny_restorer.detector_network())
    image = cv2.resize(astronaut_group[0], (1920, 1080), interpolation=cv2.INTER_LINEAR)
    core = tiny_restorer.core
    frames = DeviceFrames(core, HostKernels(), "reflect", 0, None)
    names = ("loc", "conf", "landmarks")
    frames.core = types.SimpleNamespace(detect_device=lambda x: dict(zip(names, core.detect_host(x))))
    (got,), uploads = frames.detect([image], detector)
    want = detector.detect(image)
    assert len(got) == len(want) == 3 and len(uploads) == 1 and uploads[0] is not image
    np.testing.assert_array_equal(uploads[0], image)
    for a, b in zip(got, want):
        assert a.score == b.score < 1.0
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
    assert frames.detect([], detector) == ([], [])
    with pytest.raises(ValueError, match=r"^detector_input: \(736, 1280\) is not the expected \(768, 1280\)$"):
        HostKernels().detector_input([image], (720, 1280), (768, 1280))


@pytest.mark.parametrize("which", ["torch_kernels", "cupy_kernels"])
def test_the_detectors_candidates_are_gathered_where_the_outputs_are(request, which):
    """Issue 29: the rows above the threshold, picked and gathered on the device (torch, CuPy), are
    the host's: the same indices, scores, boxes and landmarks, per frame; a score equal to the
    threshold is not above it; fp16 scores come back as float32."""
    from flipnet_rt.faces.device import HostKernels

    kernels, upload = request.getfixturevalue(which)
    rng = np.random.default_rng(5)
    conf = rng.uniform(0, 1, (2, 168, 2)).astype(np.float16)  # an fp16 engine's scores
    conf[:, 3, 1] = 0.5  # exactly the threshold
    outputs = {
        "loc": rng.standard_normal((2, 168, 4), dtype=np.float32),
        "conf": conf,
        "landmarks": rng.standard_normal((2, 168, 10), dtype=np.float32),
    }
    host = HostKernels().candidates(outputs, 0.5)
    ours = kernels.candidates({k: upload(v) for k, v in outputs.items()}, 0.5)
    assert len(host) == len(ours) == 2
    for (hi, hs, hl, hm), (oi, os_, ol, om) in zip(host, ours):
        assert 50 < len(hi) < 120 and 3 not in hi and oi.dtype == np.int64  # about half the rows
        assert os_.dtype == np.float32
        np.testing.assert_array_equal(oi, hi)
        for a, b in ((os_, hs), (ol, hl), (om, hm)):
            assert isinstance(a, np.ndarray)
            np.testing.assert_array_equal(a, b)
    if which == "cupy_kernels":  # on the arrays' device (0 here), not "the current one"
        devices = [entry[1] for entry in sys.modules["cupy"].log if entry[0] == "device"]
        assert devices and set(devices) == {0}
