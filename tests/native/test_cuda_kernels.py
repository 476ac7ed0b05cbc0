"""Parity of the native CUDA kernels with the CPU kernels and the Python references (GPU only).

Device arrays are CuPy arrays passed through DLPack; each kernel runs on a CuPy stream and the
test synchronises it. Skips here with the reason (no CUDA build, no CuPy or no GPU). Tolerances:
1 grey level for warp and paste (the issue's bound; the CUDA source point is a true fused
multiply-add, as OpenCV's vector path), 1e-6 for the colour fix (the same float32 operations,
compiled with --fmad=false).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import cupy_on_a_gpu, native_cuda_kernels

from flipnet_rt import native

pytestmark = pytest.mark.gpu


def _needs_cuda():
    return native_cuda_kernels(), cupy_on_a_gpu()


@pytest.fixture(scope="module")
def scene():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:540, 0:960]
    frame = np.ascontiguousarray(np.stack([(xx * 0.5 + yy) % 256, np.sin(xx / 9.0) * 100 + 128,
                                           rng.integers(0, 256, (540, 960))], -1).astype(np.uint8))
    affines = []
    for _ in range(6):
        centre = (rng.uniform(0, 960), rng.uniform(0, 540))
        m = cv2.getRotationMatrix2D(centre, rng.uniform(-40, 40), rng.uniform(0.5, 3.0))
        m[:, 2] += (64 - centre[0], 64 - centre[1])
        affines.append(m)
    return frame, np.ascontiguousarray(np.stack(affines))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("border", ["reflect", "constant"])
def test_warp_crop_cuda_matches_cpu(scene, dtype, border):
    nat, cp = _needs_cuda()
    frame, mats = scene
    code, value = native.border_args(border)
    want = native.warp_crop(frame, list(mats), 128, border, dtype)
    stream = cp.cuda.Stream(non_blocking=True)
    out = cp.empty((len(mats), 3, 128, 128), dtype)
    nat.warp_crop_cuda(cp.asarray(frame), mats, out, code, value, stream.ptr)
    stream.synchronize()
    err = float(np.abs(cp.asnumpy(out).astype(np.float32) - want.astype(np.float32)).max()) * 127.5
    print(f"warp_crop_cuda {border} {np.dtype(dtype).name}: max error {err:.3f} grey levels")
    assert err <= 1.0 + 1e-4


def test_paste_cuda_matches_reference(scene):
    from flipnet_rt.faces.align import warp_faces
    from flipnet_rt.faces.paste import paste_faces

    nat, cp = _needs_cuda()
    frame, mats = scene
    faces = [255 - f for f in warp_faces(frame, list(mats), 128)]
    want = paste_faces(frame, faces, list(mats))
    target = cp.asarray(frame)
    stream = cp.cuda.Stream(non_blocking=True)
    nat.paste_faces_cuda(target, cp.asarray(np.stack(faces)), mats, stream.ptr)
    stream.synchronize()
    diff = np.abs(cp.asnumpy(target).astype(int) - want)
    print(f"paste_faces_cuda: max error {diff.max()} grey levels, {np.mean(diff > 0):.2e} of values differ")
    assert diff.max() <= 1


@pytest.mark.parametrize("levels", [1, 5])
def test_colour_fix_cuda_matches_reference(levels):
    from flipnet_rt.imaging.colour import wavelet_color_fix

    nat, cp = _needs_cuda()
    rng = np.random.default_rng(levels)
    image = rng.normal(0, 0.5, (3, 3, 128, 96)).astype(np.float32)
    reference = rng.normal(0, 0.5, image.shape).astype(np.float32)
    out = cp.empty(image.shape, cp.float32)
    nat.wavelet_color_fix_cuda(cp.asarray(image), cp.asarray(reference), out, levels, 0)
    cp.cuda.Device().synchronize()
    err = float(np.abs(cp.asnumpy(out) - wavelet_color_fix(image, reference, levels)).max())
    print(f"wavelet_color_fix_cuda, {levels} levels: max error {err:.3g}")
    assert err <= 1e-6
