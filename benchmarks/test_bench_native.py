"""Native CPU kernels vs their Python/OpenCV references, per face at 1080p, as ratios in one run.

``make bench`` (or ``pytest benchmarks/test_bench_native.py --benchmark-only``). The scene: a
generated 1920x1080 frame with 3 faces of eye distance 40, 70 and 110 px (as
``test_bench_faces.py``), aligned to 512-px crops (the full model's resolution):

* ``crop``: the engine input ``float32 [3, 3, 512, 512]`` in [-1, 1] —
  ``to_float(np.stack(faces.align.warp_faces(...)))`` vs ``native.warp_crop`` (one fused pass);
* ``warp``: the uint8 crops ``[512, 512, 3]`` — ``faces.align.warp_faces`` (``cv2.warpAffine``) vs
  the native ``warp_u8``;
* ``paste``: the 3 crops pasted back — ``faces.paste.paste_faces`` vs the native paste;
* ``colour_fix``: ``imaging.colour.wavelet_color_fix`` on ``float32 [3, 3, 512, 512]``, 5 levels,
  vs the native kernel.

Both sides of a ratio are timed in the same test, interleaved round by round (the machine is
shared, so interleaving spreads its noise over both), on the same inputs and thread count (the
native kernels use every hardware thread, as OpenCV does). ``extra_info`` holds
``ms_per_face_native``, ``ms_per_face_reference`` and ``speedup`` (reference / native, medians);
pytest-benchmark's own table times the native side. ``flipnet_rt.imaging.native.NATIVE_CPU`` dispatches
the kernels whose speedup is above 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from flipnet_rt.imaging import native

pytestmark = pytest.mark.skipif(native.module() is None, reason="flipnet_rt._native is not built")

SIZE = 512
LEVELS = 5
EYES_1080 = (40.0, 70.0, 110.0)
ROUNDS = 15
TEMPLATE_EYE_DISTANCE_512 = 125.92  # facexlib's FFHQ template: right eye x - left eye x at 512 px


@pytest.fixture(scope="module")
def scene():
    from flipnet_rt.imaging.scene import background

    rng = np.random.default_rng(3)
    frame = background(1080, 1920, rng)
    affines = []
    for i, eyes in enumerate(EYES_1080):
        scale = TEMPLATE_EYE_DISTANCE_512 / eyes
        angle = np.deg2rad((-15.0, 5.0, 20.0)[i])
        rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = np.array([1920 * (i + 0.5) / 3, 1080 * (0.4 + 0.1 * i)])
        affines.append(np.c_[rot, np.array([SIZE / 2, SIZE / 2]) - rot @ centre])
    return frame, affines


def _interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, calls alternating round by round."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def _record(benchmark, kernel: str, reference: Callable[[], object], fast: Callable[[], object], faces: int) -> None:
    t = _interleaved({"reference": reference, "native": fast}, ROUNDS)
    benchmark.pedantic(fast, rounds=ROUNDS, warmup_rounds=1)
    info = {
        "kernel": kernel,
        "faces": faces,
        "ms_per_face_reference": t["reference"] * 1e3 / faces,
        "ms_per_face_native": t["native"] * 1e3 / faces,
        "speedup": t["reference"] / t["native"],
    }
    benchmark.extra_info.update(info)
    print(
        f"\n{kernel}: reference {info['ms_per_face_reference']:.2f} ms/face, native "
        f"{info['ms_per_face_native']:.2f} ms/face, speedup {info['speedup']:.2f}x"
    )


def test_crop(benchmark, scene):
    from flipnet_rt.faces.align import warp_faces
    from flipnet_rt.imaging.tensor import to_float

    frame, affines = scene
    nat = native.module()
    mats = np.ascontiguousarray(np.stack(affines))
    out = np.empty((len(affines), 3, SIZE, SIZE), np.float32)

    def reference():
        return to_float(np.stack(warp_faces(frame, affines, SIZE, "reflect")))

    def fast():
        nat.warp_crop(frame, mats, out, 4, (0, 0, 0))
        return out

    np.testing.assert_array_equal(fast(), reference())  # the same values before timing them
    _record(benchmark, "crop", reference, fast, len(affines))


def test_warp(benchmark, scene):
    from flipnet_rt.faces.align import warp_faces

    frame, affines = scene
    nat = native.module()
    mats = np.ascontiguousarray(np.stack(affines))
    out = np.empty((len(affines), SIZE, SIZE, 3), np.uint8)

    def reference():
        return warp_faces(frame, affines, SIZE, "reflect")

    def fast():
        nat.warp_u8(frame, mats, out, 4, (0, 0, 0))
        return out

    assert np.abs(fast().astype(int) - np.stack(reference())).max() <= 1
    _record(benchmark, "warp", reference, fast, len(affines))


def test_paste(benchmark, scene):
    from flipnet_rt.faces.align import warp_faces
    from flipnet_rt.faces.paste import paste_faces

    frame, affines = scene
    nat = native.module()
    crops = warp_faces(frame, affines, SIZE, "reflect")
    stacked, mats = np.ascontiguousarray(np.stack(crops)), np.ascontiguousarray(np.stack(affines))
    target = frame.copy()

    def reference():
        return paste_faces(frame, crops, affines)

    def fast():
        np.copyto(target, frame)  # the reference copies the frame too (inplace=False)
        nat.paste_faces(target, stacked, mats)
        return target

    assert np.abs(fast().astype(int) - reference()).max() <= 1
    _record(benchmark, "paste", reference, fast, len(affines))


def test_colour_fix(benchmark):
    from flipnet_rt.imaging.colour import wavelet_color_fix

    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (len(EYES_1080), 3, SIZE, SIZE)).astype(np.float32)
    reference_image = rng.uniform(-1, 1, image.shape).astype(np.float32)
    nat = native.module()
    out = np.empty_like(image)

    def reference():
        return wavelet_color_fix(image, reference_image, LEVELS)

    def fast():
        nat.wavelet_color_fix(image, reference_image, out, LEVELS)
        return out

    np.testing.assert_array_equal(fast(), reference())
    _record(benchmark, "colour_fix", reference, fast, len(EYES_1080))
