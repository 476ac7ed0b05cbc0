"""The device frame path (flipnet_rt/faces/device.py) on the CPU: the same flow as on a GPU, with
the host kernels, against the host path of FaceRestorer on the shipped demo engine.

On ONNX Runtime CPU the device path runs the same functions as the host path in another order
(one upload and download per frame, crops straight into the engine's float input, colour fix and
paste per batch), so the frames must be equal bit for bit: any difference is a bug in the flow
(an affine, seed, paste order or batch split gone wrong). The CUDA kernels' side is
tests/faces/test_device_gpu.py.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def frames(mtcnn):
    """Four 320x180 frames with 3, 0, 1 and 2 astronaut heads at the demo model's scale (S = R), the
    detected faces of each, and a seed per face."""
    from synthetic.video import face_scene, noisy

    rng = np.random.default_rng(0)
    images, faces = [], []
    for count in (3, 0, 1, 2):
        if count:
            scene, _ = face_scene((320, 180), eye_distance=15.0, faces=count)
        image = noisy(scene if count else np.full((180, 320, 3), 100.0, np.float32), 3.0, rng)
        images.append(image)
        faces.append(mtcnn.detect(image) if count else [])
    assert [len(f) for f in faces] == [3, 0, 1, 2]
    seeds = [[100 * i + j for j in range(len(f))] for i, f in enumerate(faces)]
    return images, faces, seeds


def _restorers(restorer, mtcnn, **options):
    from flipnet_rt.faces.pipeline import FaceOptions, FaceRestorer

    opts = FaceOptions(**options)
    return (
        FaceRestorer(restorer, mtcnn, opts, frame_path="host"),
        FaceRestorer(restorer, mtcnn, opts, frame_path="device"),
    )


CASES = {  # name: (frames used, FaceOptions, sampling overrides)
    "four frames": ([0, 1, 2, 3], {}, {"color_fix": 0}),
    "batches of 2, colour fix, constant border": (
        [0, 1, 2, 3],
        {"max_batch": 2, "border": "constant"},
        {"color_fix": 3},
    ),
    "batches of 4 (two calls), guidance 2": ([0, 1, 2, 3], {"max_batch": 4}, {"guidance": 2.0}),
    "one frame": ([0], {}, {}),
    "two frames": ([3, 2], {}, {}),
}


@pytest.mark.parametrize("case", CASES)
def test_device_path_equals_the_host_path(demo_restorer, mtcnn, frames, case):
    from flipnet_rt.runtime.profiling import StageTimer

    which, options, sampling = CASES[case]
    images, faces, seeds = ([x[k] for k in which] for x in frames)
    timer = StageTimer()
    host, device = _restorers(demo_restorer.variant(timer=timer), mtcnn, **options)
    for f in (host, device):
        f.sampling = demo_restorer.options(**sampling)
    assert type(device.device_frames.kernels).__name__ == "HostKernels"
    want = host.restore_faces(images, faces, seeds)
    calls = len(timer.records["vae_decoder"])
    got = device.restore_faces(images, faces, seeds)
    assert len(timer.records["vae_decoder"]) == 2 * calls  # the same engine calls: max_batch holds
    for k, ((a, ra), (b, rb), image) in enumerate(zip(want, got, images)):
        err = int(np.abs(a.astype(int) - b.astype(int)).max())
        print(f"{case}, frame {k} ({len(ra)} faces): max error {err}")
        assert err == 0
        assert b is not image and b.shape == image.shape
        if ra:
            assert (a != image).any()  # faces were restored, not copied
        for x, y in zip(ra, rb):
            assert y.restored and np.array_equal(x.affine, y.affine) and x.seed == y.seed and y.crop_size == 64
            assert y.aligned is None and y.output is None  # crops stay on the device
            # the demo engine's estimator (--fidelity auto) on the same crops and restorations
            assert (x.fidelity, x.fidelity_source) == (y.fidelity, "estimator")
        if not ra:
            np.testing.assert_array_equal(image, b)  # a faceless frame comes back as it was


def test_frames_without_faces_come_back_as_copies(demo_restorer):
    from flipnet_rt.faces.device import DeviceFrames, HostKernels

    frames = [np.full((20, 30, 3), v, np.uint8) for v in (10, 200)]
    out, weights = DeviceFrames(demo_restorer.core, HostKernels(), "reflect", 0).restore(
        frames, [np.empty((0, 2, 3)), []], [[], []], demo_restorer.options()
    )
    assert weights is None
    for a, b in zip(frames, out):
        assert b is not a
        np.testing.assert_array_equal(a, b)


def test_frames_already_uploaded_are_pasted_into(demo_restorer, frames):
    """DeviceFrames.restore(frames=...): the frames detect() uploaded are restored in place, not uploaded
    again (a None entry is); the result is that of a call that uploads them itself, with the estimator's
    float32 weights, one per face."""
    from flipnet_rt.faces.align import estimate_affine
    from flipnet_rt.faces.device import DeviceFrames, HostKernels
    from flipnet_rt.faces.fidelity import FidelityChooser

    images, faces, seeds = ([x[k] for k in (0, 2)] for x in frames)
    affines = [np.stack([estimate_affine(f.landmarks, 64) for f in per]) for per in faces]
    kernels = HostKernels()
    path = DeviceFrames(demo_restorer.core, kernels, "reflect", 0, FidelityChooser(demo_restorer))  # auto
    options = demo_restorer.options()
    want, want_w = path.restore(images, affines, seeds, options)
    uploaded = [kernels.upload(images[0]), None]
    got, got_w = path.restore(images, affines, seeds, options, frames=uploaded)
    assert got[0] is uploaded[0]  # pasted into and handed back (the host "download" is the array)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    assert got_w.dtype == np.float32 and got_w.shape == (4,)
    np.testing.assert_array_equal(want_w, got_w)


def test_the_inputs_are_not_changed(demo_restorer, mtcnn, frames):
    images, faces, seeds = frames
    before = [image.copy() for image in images]
    _restorers(demo_restorer, mtcnn)[1].restore_faces(images, faces, seeds)
    for a, b in zip(before, images):
        np.testing.assert_array_equal(a, b)


def test_a_call_with_a_larger_face_goes_the_host_path(demo_restorer, mtcnn, frames):
    """A face whose crop side S exceeds R (keep-detail or resize) needs the host: the whole call goes there."""
    from synthetic.video import face_scene, noisy

    images, faces, seeds = frames
    scene, _ = face_scene((320, 180), eye_distance=30.0, faces=1)
    big = noisy(scene, 3.0, np.random.default_rng(1))
    big_faces = mtcnn.detect(big)
    host, device = _restorers(demo_restorer, mtcnn)
    got = device.restore_faces([images[0], big], [faces[0], big_faces], [seeds[0], [7]])
    want = host.restore_faces([images[0], big], [faces[0], big_faces], [seeds[0], [7]])
    assert got[1][1][0].crop_size > 64
    assert got[1][1][0].aligned is not None  # the host path's results
    for (a, _), (b, _) in zip(want, got):
        np.testing.assert_array_equal(a, b)


def test_which_kernels_run_which_arrays():
    from flipnet_rt.faces.device import kernels_for

    assert kernels_for("torch", "cuda", True) == "torch" and kernels_for("cupy", "cuda", True) == "cupy"
    for args in (
        ("torch", "cpu", True),
        ("torch", "cuda", False),
        ("cupy", "cuda", False),
        ("jax", "cuda", True),
        ("numpy", "cuda", True),
    ):
        assert kernels_for(*args) is None, args


def test_the_frame_path_is_chosen_once(demo_restorer, mtcnn, tiny_restorer):
    from faces.support import ShiftRestorer

    from flipnet_rt.faces.pipeline import FaceRestorer

    assert FaceRestorer(demo_restorer, mtcnn).device_frames is None  # host by default
    assert FaceRestorer(demo_restorer, mtcnn, frame_path="auto").device_frames is None  # CPU: host
    with pytest.raises(ValueError, match="frame path device: needs a Restorer .*use --frame-path host"):
        FaceRestorer(ShiftRestorer(64), mtcnn, frame_path="device")
    with pytest.raises(ValueError, match="frame path device"):  # torch on the CPU: host arrays that are not numpy
        FaceRestorer(tiny_restorer, mtcnn, frame_path="device")
    assert FaceRestorer(tiny_restorer, mtcnn, frame_path="auto").device_frames is None
    with pytest.raises(ValueError):
        FaceRestorer(demo_restorer, mtcnn, frame_path="gpu")


def test_host_kernels_keep_the_contract(frames):
    """The host side of the kernel contract that tests/faces/test_device_gpu.py runs on CUDA arrays."""
    from flipnet_rt.faces.align import estimate_affine, warp_faces
    from flipnet_rt.faces.device import HostKernels
    from flipnet_rt.faces.paste import paste_faces
    from flipnet_rt.imaging.tensor import to_float, to_uint8

    images, faces, _ = frames
    k = HostKernels()
    frame = k.upload(images[0])
    assert frame is not images[0] and np.array_equal(frame, images[0])
    affines = np.stack([estimate_affine(f.landmarks, 64) for f in faces[0]])
    crops = k.crops(frame, affines, 64, "reflect")
    want = to_float(np.stack(warp_faces(images[0], list(affines), 64, "reflect")))
    print(f"host crops vs warp_faces: max error {np.abs(crops - want).max() * 127.5:.3f} grey levels")
    assert crops.dtype == np.float32 and np.abs(crops - want).max() * 127.5 <= 1.0
    half = np.zeros((1, 3, 4, 4), np.float16)
    assert k.cast(crops, half).dtype == np.float16 and k.float32(half).dtype == np.float32
    edge = affines.copy()
    edge[:, :, 2] += (40.0, 30.0)  # the crops reach past the frame's top left corner: the border shows
    for border in ("reflect", "constant"):
        want = to_float(np.stack(warp_faces(images[0], list(edge), 64, border)))
        np.testing.assert_array_equal(k.crops(frame, edge, 64, border), want)
    faces_u8 = k.to_faces(crops)
    np.testing.assert_array_equal(faces_u8, to_uint8(crops))
    with pytest.raises(ValueError, match="NaN"):
        k.to_faces(np.full((1, 3, 4, 4), np.nan, np.float32))
    k.paste(frame, faces_u8[::-1].copy(), affines[::-1].copy())
    np.testing.assert_array_equal(frame, paste_faces(images[0], list(faces_u8[::-1]), list(affines[::-1])))


def test_detection_on_the_device_path_runs_on_the_uploaded_frames(tiny_engine, astronaut_group):
    """Issue 29: with an engine that carries the detector, the device frame path uploads each frame
    once and detects there (the engine's detector network on its backend; the host never resizes the
    frame), then restores in the same uploads; it finds what the host path finds and writes the same
    pictures, bit for bit (the host kernels make the detector's input as the host path does)."""
    from flipnet_rt.faces.detectors import load_detector
    from flipnet_rt.faces.pipeline import FaceRestorer
    from flipnet_rt.runtime.restorer import Restorer

    restorer = Restorer.load(tiny_engine, backend="onnxruntime", device="cpu")
    core = restorer.core
    detector = load_detector("retinaface", network=restorer.detector_network())
    calls = {"host": 0, "device": 0}
    host_call, device_call = core.detect_host, core.detect_device

    def count(name, call):
        def counted(x):
            calls[name] += 1
            return call(x)

        return counted

    image, _ = astronaut_group
    images = [image, np.ascontiguousarray(image[:, ::-1])]
    host = FaceRestorer(restorer, detector, frame_path="host").restore_images(images, [1, 2])
    core.detect_host, core.detect_device = count("host", host_call), count("device", device_call)  # type: ignore[method-assign]
    try:
        device_restorer = FaceRestorer(
            restorer, load_detector("retinaface", network=restorer.detector_network()), frame_path="device"
        )
        assert device_restorer._detects_on_device(images)
        device = device_restorer.restore_images(images, [1, 2])
    finally:
        del core.detect_host, core.detect_device
    assert calls == {"host": 0, "device": 1}  # one call for both frames (and no second look: all scored >= 0.97)
    for (a, ra), (b, rb) in zip(host, device):
        assert [r.face.box.tolist() for r in ra] == [r.face.box.tolist() for r in rb] and len(ra) == 3
        np.testing.assert_array_equal(a, b)
    # a detector not on this engine's network (the shipped ONNX file) detects on the host
    assert not FaceRestorer(restorer, load_detector("retinaface"), frame_path="device")._detects_on_device(images)


def test_video_searches_on_the_device_and_restores_from_the_same_uploads(tiny_engine):
    """Issue 29, video: one engine worker on the device frame path with RetinaFace on the engine's
    detector: each full search uploads its frames and runs there (batched with detect_batch), and the
    restore pastes into those uploads instead of uploading again; the video is the one the same
    detector gives searching on the host, bit for bit."""
    from synthetic.video import face_scene, noisy

    from flipnet_rt.faces.detectors import load_detector
    from flipnet_rt.faces.pipeline import FaceRestorer
    from flipnet_rt.runtime.restorer import Restorer
    from flipnet_rt.video.pipeline import VideoOptions, VideoRestorer

    restorer = Restorer.load(tiny_engine, backend="onnxruntime", device="cpu")
    scene, _ = face_scene((320, 180), eye_distance=15.0, faces=2)  # the model's scale: S = R
    rng = np.random.default_rng(3)
    frames = [noisy(scene, 3.0, rng) for _ in range(6)]
    runs = {}
    for where in ("host", "device"):
        faces = FaceRestorer(
            restorer, load_detector("retinaface", network=restorer.detector_network()), frame_path="device"
        )
        uploads: list[int] = []
        upload = faces.device_frames.kernels.upload
        faces.device_frames.kernels.upload = lambda frame, upload=upload, uploads=uploads: (
            uploads.append(1) or upload(frame)
        )
        options = VideoOptions(detect_every=2, lookahead=2, batch_size=4, detect_batch=2)
        video = VideoRestorer(faces, options)
        assert video._detects_on_device
        video._detects_on_device = where == "device"
        runs[where] = ([f.image for f in video.restore_frames(frames)], len(uploads), video.tracks_seen)
    (host, host_uploads, host_tracks), (device, device_uploads, device_tracks) = runs["host"], runs["device"]
    assert host_tracks == device_tracks == 2
    for a, b in zip(host, device):
        np.testing.assert_array_equal(a, b)
    # host search: every frame uploaded once to restore (6); device search: the searched frames
    # (0, 2, 4 and the last, 5) uploaded to be searched and restored from that upload: still 6, not 10
    assert host_uploads == device_uploads == 6
