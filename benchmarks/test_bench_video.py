"""Video throughput on the demo engine (64 px, ONNX Runtime CPU) with each face detector (``make bench``).

For each detector (``retinaface``, the default, and ``mtcnn``), frame size (640x360, 1280x720) and
face count (1, 3) a generated clip (the astronaut's head at the demo model's scale, fresh sensor
noise every frame, a sine AAC track; both detectors find every head) is restored

- by a **naive sequential loop**: decode → detect → align → restore → paste → encode, one frame at
  a time in one thread, every stage timed (the share of each stage is the naive loop's);
- by the **pipeline** (:func:`flipnet_rt.video.transcode.transcode` + ``VideoRestorer``) with the
  CLI's defaults: decode and encode in their own threads, faces of several frames in one engine
  call (batch 8), two single-threaded engine workers restoring batches concurrently (``--workers``
  automatic on 2 cores), the whole frame searched every 10th frame and each tracked face detected
  again near its predicted place in the frames between (``--tracking region``);
- by the pipeline with one engine worker (``--workers 1``, ONNX Runtime's default threads);
- by the pipeline searching the whole of every frame (``--detect-every 1``);

in the same run, interleaved, so the speedups are ratios on the same machine at the same time. Both use
the same decoder, encoder settings (libx264 medium, crf 18) and seeds. The frames/s of both and
the ratios are in each benchmark's ``extra_info`` (``--benchmark-json``) and printed (``-s``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="needs the video extra (PyAV)")

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "models" / "demo-onnx"
# 90 frames (3.6 s at 25 frames/s): the pipeline's start (look-ahead and batches filling) and end
# (draining) weigh on short clips; FLIPNET_BENCH_FRAMES changes it
FRAMES = int(os.environ.get("FLIPNET_BENCH_FRAMES", "90"))
STAGES = ("decode", "detect", "align", "restore", "paste", "encode")


CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
WORKERS = 2 if CORES >= 2 else 1  # what `flipnet-rt video --workers 0` (the default) picks here


@pytest.fixture(scope="module", params=["retinaface", "mtcnn"])
def detector(request):
    """The detector (its defaults), loaded once per module and detector."""
    from flipnet_rt.faces.detectors import load_detector

    return load_detector(request.param)


@pytest.fixture(scope="module")
def parts(detector):
    """(Restorer with ONNX Runtime's default threads, the detector, the CLI's default engine workers) loaded once."""
    from flipnet_rt.backends.registry import BackendOptions
    from flipnet_rt.runtime.restorer import Restorer

    if not (ENGINE / "manifest.json").is_file():
        pytest.fail(f"{ENGINE}: the shipped demo engine is missing")
    workers = [
        Restorer.load(
            ENGINE, backend="onnxruntime", device="cpu", options=BackendOptions(threads=max(1, CORES // WORKERS))
        )
        for _ in range(WORKERS)
    ]
    return Restorer.load(ENGINE, backend="onnxruntime", device="cpu"), detector, workers


def timed_faces(restorer, detector, timer):
    """A FaceRestorer whose align / restore / paste steps report to ``timer`` (its private steps
    are wrapped here, in the benchmark only, to split the per-face work into the issue's stages)."""
    from flipnet_rt.faces.pipeline import FaceRestorer

    class Timed(FaceRestorer):
        def _align(self, image, result, given=None):
            with timer.stage("align"):
                return super()._align(image, result, given)

        def _back(self, result, model_input, restored):
            with timer.stage("paste"):
                return super()._back(result, model_input, restored)

        def _paste(self, image, results):
            with timer.stage("paste"):
                return super()._paste(image, results)

    class TimedCore:
        config = restorer.config
        has_fidelity = restorer.has_fidelity

        def options(self, **kw):
            return restorer.options(**kw)

        def fidelity(self, inputs, restored):
            with timer.stage("fidelity"):
                return restorer.fidelity(inputs, restored)

        def restore(self, images, options=None, seeds=None):
            with timer.stage("restore"):
                return restorer.restore(images, options, seeds)

    return Timed(TimedCore(), detector)


def make_clip(folder: Path, size: tuple[int, int], faces: int) -> Path:
    from synthetic.video import cfr_pts, face_scene, noisy, write_clip

    scene, _ = face_scene(size, eye_distance=15.0, faces=faces)
    rng = np.random.default_rng(0)
    return write_clip(
        folder / f"{size[0]}x{size[1]}_{faces}.mp4", cfr_pts(FRAMES), size=size, frame=lambda i: noisy(scene, 3.0, rng)
    )


def naive(src: Path, out: Path, faces, detector, timer) -> float:
    """decode → detect → restore (align, engine, paste) → encode, one frame at a time. Returns seconds."""
    from flipnet_rt.config.options import image_seed
    from flipnet_rt.video.encoding import EncoderOptions
    from flipnet_rt.video.sink import VideoSink
    from flipnet_rt.video.source import VideoSource

    began = time.perf_counter()
    with VideoSource(src) as source:
        sink = VideoSink(out, source, EncoderOptions()).open()
        items = source.items()
        while True:
            with timer.stage("decode"):
                item = next(items, None)
            if item is None:
                break
            if not hasattr(item, "image"):  # an audio packet: copied as the pipeline does
                with timer.stage("encode"):
                    sink.write_packet(item)
                continue
            with timer.stage("detect"):
                found = detector.detect(item.image)
            seeds = [image_seed(0, item.index, j) for j in range(len(found))]
            image, _ = faces.restore_faces([item.image], [found], [seeds])[0]
            with timer.stage("encode"):
                sink.write_frame(item.with_image(image))
        with timer.stage("encode"):
            sink.commit()
    return time.perf_counter() - began


def pipeline(src: Path, out: Path, faces, detector, timer, **options) -> float:
    """``faces``: one FaceRestorer per engine worker."""
    from flipnet_rt.video.pipeline import VideoOptions, VideoRestorer
    from flipnet_rt.video.transcode import transcode

    video = VideoRestorer(faces, VideoOptions(batch_size=8, **options), detector=detector, timer=timer)
    report = transcode(src, out, video, timer=timer)
    assert report.frames == FRAMES
    return report.seconds


VARIANTS = {  # (engine workers, VideoOptions) of each pipeline variant (the defaults are the CLI's)
    "naive": None,
    "pipeline": (WORKERS, {}),
    "pipeline_one_worker": (1, {}),
    "pipeline_detect_every_1": (WORKERS, {"detect_every": 1}),
}
ROUNDS = 2


@pytest.mark.parametrize("faces_per_frame", [1, 3])
@pytest.mark.parametrize("size", [(640, 360), (1280, 720)], ids=["360p", "720p"])
def test_video_throughput(benchmark, parts, tmp_path, size, faces_per_frame):
    """Each variant runs ROUNDS times, interleaved (the second round in reverse order), and keeps
    its fastest round: this machine's other load comes and goes, and the minimum is the run it
    disturbed least. The stage shares are the naive loop's, from its fastest round."""
    from flipnet_rt.runtime.profiling import StageTimer

    restorer, detector, workers = parts
    src = make_clip(tmp_path, size, faces_per_frame)
    warm = StageTimer()  # first calls allocate ONNX Runtime arenas: not charged to any variant
    for r in (restorer, *workers):
        pipeline(src, tmp_path / "warm.mp4", [timed_faces(r, detector, warm)], detector, warm)

    def run(variant: str) -> tuple[float, dict[str, float]]:
        timer = StageTimer()
        out = tmp_path / f"{variant}.mp4"
        if VARIANTS[variant] is None:
            seconds = naive(src, out, timed_faces(restorer, detector, timer), detector, timer)
        else:
            count, options = VARIANTS[variant]
            faces = [timed_faces(r, detector, timer) for r in (workers if count > 1 else [restorer])]
            seconds = pipeline(src, out, faces, detector, timer, **options)
        return seconds, timer.totals()

    best: dict[str, tuple[float, dict[str, float]]] = {}

    def rounds():
        for r in range(ROUNDS):
            for variant in list(VARIANTS) if r % 2 == 0 else list(VARIANTS)[::-1]:
                got = run(variant)
                if variant not in best or got[0] < best[variant][0]:
                    best[variant] = got

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    naive_s, totals = best["naive"]
    busy = sum(totals.get(s, 0.0) for s in STAGES)
    info = {
        "detector": detector.name,
        "size": f"{size[0]}x{size[1]}",
        "faces_per_frame": faces_per_frame,
        "frames": FRAMES,
        **{f"{v}_fps": round(FRAMES / best[v][0], 3) for v in VARIANTS},
        **{f"speedup_{v}": round(naive_s / best[v][0], 2) for v in VARIANTS if v != "naive"},
        "naive_stage_share": {s: round(totals.get(s, 0.0) / busy, 3) for s in STAGES},
        "naive_stage_ms_per_frame": {s: round(1000 * totals.get(s, 0.0) / FRAMES, 1) for s in STAGES},
        "pipeline_busy_s": {k: round(v, 2) for k, v in sorted(best["pipeline"][1].items())},
    }
    benchmark.extra_info.update(info)
    print("\n" + " ".join(f"{k}={v}" for k, v in info.items()))
    assert all(seconds > 0 for seconds, _ in best.values())
