"""The device frame path on a GPU (flipnet_rt/faces/device.py): the CUDA kernels' contract against
the host kernels, and whole frames on the torch backend against the host path (GPU only; the one
test at the end that runs on the CPU, over test_device_standin.py's stand-ins, checks that the
device path's NaN check waits for nothing before the download).

Skips here with the reason (no CUDA build of flipnet_rt._native, no CuPy/torch CUDA, no GPU); the
GPU check (benchmarks/gpu_check.sh step g) runs it after building the CUDA kernels. Tolerances:
1 grey level for crops and paste (the CUDA kernels' parity bound, tests/native/test_cuda_kernels.py),
1e-5 for the colour fix (float32 on both; the kernels' own test holds 1e-6), exact for to_faces
(the same float32 operations and round-half-to-even).
"""

from __future__ import annotations

import types

import numpy as np
import pytest
from helpers import cupy_on_a_gpu, native_cuda_kernels

NAN_ERROR = (
    r"^to_uint8: the model's output contains NaN \(a numerically broken engine: rebuild it, "
    r"or run in fp32\)$"
)


def _kernels(library: str):
    nat = native_cuda_kernels()
    from flipnet_rt.faces.device import CupyKernels, TorchKernels

    if library == "cupy":
        cupy = cupy_on_a_gpu()  # first: CupyKernels imports cupy
        return CupyKernels(nat, 0), cupy.asarray
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU for torch")
    return TorchKernels(nat, "cuda:0"), lambda a: torch.from_numpy(np.ascontiguousarray(a)).to("cuda:0")


def _host(array) -> np.ndarray:
    return array.cpu().numpy() if hasattr(array, "cpu") else array.get()


@pytest.fixture(scope="module")
def scene():
    """A 360x640 frame and three faces' frame -> crop affines at 64 px (rotated, one past the edge)."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:360, 0:640]
    frame = np.ascontiguousarray(
        np.stack([(xx * 0.5 + yy) % 256, np.sin(xx / 9.0) * 100 + 128, rng.integers(0, 256, (360, 640))], -1).astype(
            np.uint8
        )
    )
    affines = []
    for centre, angle in (((100.0, 150.0), -20.0), ((320.0, 180.0), 5.0), ((630.0, 20.0), 30.0)):
        m = cv2.getRotationMatrix2D(centre, angle, 0.8)
        m[:, 2] += (32 - centre[0], 32 - centre[1])
        affines.append(m)
    return frame, np.stack(affines)


@pytest.mark.gpu
@pytest.mark.parametrize("library", ["torch", "cupy"])
def test_cuda_kernels_keep_the_host_contract(scene, library):
    from flipnet_rt.faces.device import HostKernels

    kernels, to_device = _kernels(library)
    host = HostKernels()
    frame, affines = scene
    device_frame = kernels.upload(frame)
    np.testing.assert_array_equal(kernels.download(device_frame), frame)

    for border in ("reflect", "constant"):
        crops = kernels.crops(device_frame, affines, 64, border)
        err = float(np.abs(_host(crops) - host.crops(frame, affines, 64, border)).max()) * 127.5
        print(f"{library} crops ({border}) vs host: max error {err:.3f} grey levels")
        assert err <= 1.0 + 1e-4

    rng = np.random.default_rng(1)
    images = rng.uniform(-1.2, 1.2, (3, 3, 64, 64)).astype(np.float32)
    reference = rng.uniform(-1, 1, (3, 3, 64, 64)).astype(np.float32)
    fixed = _host(kernels.color_fix(to_device(images), to_device(reference), 3))
    err = float(np.abs(fixed - host.color_fix(images, reference, 3)).max())
    print(f"{library} colour fix vs host: max error {err:.2e}")
    assert err <= 1e-5

    faces = kernels.to_faces(to_device(images))
    np.testing.assert_array_equal(_host(faces), host.to_faces(images))
    with pytest.raises(ValueError, match="NaN"):
        kernels.to_faces(to_device(np.full((1, 3, 4, 4), np.nan, np.float32)))
    flags: list = []  # the deferred check DeviceFrames uses: a device flag now, the error at check_nan
    kernels.to_faces(to_device(images), flags)
    kernels.check_nan(flags)
    kernels.to_faces(to_device(np.full((1, 3, 4, 4), np.nan, np.float32)), flags)
    with pytest.raises(ValueError, match=NAN_ERROR):
        kernels.check_nan(flags)

    pasted = kernels.upload(frame)
    kernels.paste(pasted, faces, affines)
    want = frame.copy()
    host.paste(want, host.to_faces(images), affines)
    diff = np.abs(kernels.download(pasted).astype(int) - want.astype(int))
    print(f"{library} paste vs host: max error {diff.max()} grey levels, {np.mean(diff > 0):.2e} of values differ")
    assert diff.max() <= 1


@pytest.mark.gpu
def test_whole_frames_on_the_torch_backend_match_the_host_path(tiny_model):
    """random:tiny on CUDA: FaceRestorer's device path vs its host path on the same restorer. With the
    host's crops fed to the device flow, the engine sees the same input and what differs is the
    colour fix, to_faces and paste on the device: within 1 grey level. The unchanged device flow
    (crops warped on the device, within 1 grey level of the host's) is printed, not bounded."""
    import copy

    from flipnet_rt.backends.torch import TorchBackend
    from flipnet_rt.faces.align import template
    from flipnet_rt.faces.device import TorchKernels
    from flipnet_rt.faces.pipeline import FaceRestorer
    from flipnet_rt.faces.types import Face
    from flipnet_rt.models import PROMPT_KINDS
    from flipnet_rt.runtime.restorer import Restorer

    kernels, _ = _kernels("torch")
    model = copy.deepcopy(tiny_model).to("cuda").eval()
    prompts = {k: model.prompt(k).float().cpu().numpy() for k in PROMPT_KINDS}
    restorer = Restorer(TorchBackend(model, "cuda"), model.config, prompts)
    r = model.config.resolution
    rng = np.random.default_rng(2)
    frames, faces, seeds = [], [], []
    for count in (2, 1):
        frames.append(rng.integers(0, 256, (3 * r, 5 * r, 3), dtype=np.uint8))
        points = [0.9 * template(r) + (r * (1 + 2 * j) + 0.3, r + 0.6) for j in range(count)]  # S = R
        faces.append([Face(np.r_[p.min(0) - 4, p.max(0) + 4], 1.0, p) for p in points])
        seeds.append(list(range(10 * count, 10 * count + count)))

    host = FaceRestorer(restorer, frame_path="host")
    device = FaceRestorer(restorer, frame_path="auto")
    assert isinstance(device.device_frames.kernels, TorchKernels)
    want = host.restore_faces(frames, faces, seeds)
    got = device.restore_faces(frames, faces, seeds)
    for (a, _), (b, rb) in zip(want, got):
        assert all(x.crop_size == r for x in rb)
        diff = np.abs(a.astype(int) - b.astype(int))
        print(f"device flow vs host path: max {diff.max()} grey levels, mean {diff.mean():.4f}")

    class HostCrops(TorchKernels):  # the host's warp, uploaded: isolates the rest of the flow
        def crops(self, frame, affines, size, border):
            return self.torch.from_numpy(kernels.warp_crop(frame.cpu().numpy(), list(affines), size, border)).to(
                frame.device
            )

    device.device_frames.kernels = HostCrops(kernels.nat, "cuda:0")
    got = device.restore_faces(frames, faces, seeds)
    for (a, _), (b, _) in zip(want, got):
        diff = np.abs(a.astype(int) - b.astype(int))
        print(f"device flow on the host's crops vs host path: max {diff.max()} grey levels, mean {diff.mean():.4f}")
        assert diff.max() <= 1


# ------------------------------------------------------------------ on the CPU, over stand-ins
def test_a_nan_output_raises_at_the_download_and_no_batch_waits(monkeypatch):
    """DeviceFrames reads the engine's NaN flags once, with the download: each batch's to_faces keeps
    its flag on the device, so nothing waits between batches (the next upload and warp overlap the
    engine) and a NaN output still raises the same error, after the frames are pasted. TorchKernels
    over test_device_standin.py's stand-ins (torch CPU tensors as device arrays); every host read of
    a tensor (``Tensor.__bool__``, what a wait for the device is) is counted."""
    import torch
    from faces.test_device_standin import STREAM, StandinCudaKernels

    from flipnet_rt.faces.device import DeviceFrames, TorchKernels

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=STREAM))
    kernels = TorchKernels(StandinCudaKernels(), "cpu")
    waits: list = []
    real_bool = torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: waits.append(tuple(self.shape)) or real_bool(self))

    r, value = 32, float("nan")
    engine: list = []

    def run_device(pixels, mode, options, seeds):
        engine.append(len(seeds))
        return torch.full_like(pixels, value)

    backend = types.SimpleNamespace(from_numpy=lambda a: torch.from_numpy(np.array(a)), concat=torch.cat)
    core = types.SimpleNamespace(backend=backend, run_device=run_device, config=types.SimpleNamespace(resolution=r))
    device = DeviceFrames(core, kernels, "reflect", max_batch=1)
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (2 * r, 3 * r, 3), dtype=np.uint8) for _ in range(2)]
    affines = [
        np.array([[[1.0, 0.0, -8.0], [0.0, 1.0, -8.0]]]),
        np.array([[[1.0, 0.0, -40.0], [0.0, 1.0, -16.0]], [[0.9, 0.1, -60.0], [-0.1, 0.9, -20.0]]]),
    ]
    sampling = types.SimpleNamespace(color_fix=0)

    with pytest.raises(ValueError, match=NAN_ERROR):
        device.restore(frames, affines, [[1], [2, 3]], sampling)
    assert engine == [1, 1, 1]  # every batch ran: the first NaN did not stop the loop on the host
    assert [k for k, _ in kernels.nat.streams] == ["warp", "warp", "paste", "paste"]  # pasted, then raised
    assert len(waits) == 1  # one wait for the device: the three batches' flags, read together

    value, engine[:], waits[:] = 0.25, [], []
    out, weights = device.restore(frames, affines, [[1], [2, 3]], sampling)
    assert engine == [1, 1, 1] and weights is None and len(waits) == 1
    assert all(o.shape == f.shape and (o != f).any() for o, f in zip(out, frames))
