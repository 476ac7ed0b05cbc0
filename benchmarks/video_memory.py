"""Memory of a long video run: RSS while restoring a generated clip with the demo engine.

    .venv/bin/python benchmarks/video_memory.py --frames 10000 [--size 128x96] [--json F]

The clip (small frames, a sine AAC track) shows the astronaut's head for ``--face-frames`` frames
out of every ``--face-period`` (so the tracker opens and closes a track each time and the engine
runs), and a face-free scene otherwise; MTCNN searches every 10th frame whole and follows the
face in between (the defaults), on ``--workers`` engine workers (default 2, the CLI's choice on a
2-core CPU). RSS (resident set size,
from /proc/self/statm) is sampled every 50 written frames; the report gives the RSS at
``--from-frame`` and the peak after it (issue 16 asks for a growth <= 20 MB from frame 1,000 to
10,000). Linux only (``/proc``).

ONNX Runtime's CPU arena grows on the first one or two calls of each batch size (hundreds of MB
for the demo engine) and keeps it; ``--low-memory`` turns the arena off.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the generated clips: tests/synthetic

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def measure(
    frames: int,
    size: tuple[int, int],
    face_period: int,
    face_frames: int,
    from_frame: int,
    engine: Path,
    folder: Path,
    batch_size: int = 8,
    sample_every: int = 1000,
    low_memory: bool = False,
    workers: int = 2,
) -> dict:
    from synthetic.video import cfr_pts, face_scene, noisy, write_clip

    from flipnet_rt.backends.registry import BackendOptions
    from flipnet_rt.faces.detectors import load_detector
    from flipnet_rt.faces.pipeline import FaceRestorer
    from flipnet_rt.runtime.profiling import StageTimer
    from flipnet_rt.runtime.restorer import Restorer
    from flipnet_rt.video.pipeline import VideoOptions, VideoRestorer
    from flipnet_rt.video.transcode import transcode

    with_face, _ = face_scene(size, eye_distance=15.0)
    without = face_scene(size, eye_distance=15.0, faces=0)[0]
    rng = np.random.default_rng(0)
    src = write_clip(
        folder / "long.mp4",
        cfr_pts(frames),
        size=size,
        frame=lambda i: noisy(with_face if i % face_period < face_frames else without, 3.0, rng),
    )
    threads = max(1, len(os.sched_getaffinity(0)) // workers) if workers > 1 else None
    detector = load_detector("mtcnn")
    faces = [
        FaceRestorer(
            Restorer.load(
                engine,
                backend="onnxruntime",
                device="cpu",
                options=BackendOptions(low_memory=low_memory, threads=threads),
            ),
            detector,
        )
        for _ in range(workers)
    ]
    samples: dict[int, float] = {}
    peak_at: dict[int, int] = {}

    def probe(written: int) -> None:
        if written % 50 == 0 or written == from_frame:
            samples[written] = rss_mb()
        if written == from_frame:
            peak_at[from_frame] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    timer = StageTimer(keep=False)  # totals only: a list per call would grow with the video
    video = VideoRestorer(faces, VideoOptions(batch_size=batch_size), timer=timer)
    began = time.perf_counter()
    report = transcode(src, folder / "out.mp4", video, timer=timer, on_frame=probe, progress=None)
    after = {k: v for k, v in samples.items() if k >= from_frame}
    return {
        "frames": report.frames,
        "low_memory": low_memory,
        "workers": workers,
        "size": f"{size[0]}x{size[1]}",
        "seconds": round(time.perf_counter() - began, 1),
        "face_tracks": video.tracks_seen,
        "restored_frames_with_face": sum(1 for i in range(frames) if i % face_period < face_frames),
        "rss_mb_at_from_frame": round(samples[from_frame], 1),
        "from_frame": from_frame,
        "rss_mb_peak_after": round(max(after.values()), 1),
        "rss_growth_mb": round(max(after.values()) - samples[from_frame], 2),
        "maxrss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_at[from_frame]) / 1024, 2),
        "rss_mb_samples": {k: round(v, 1) for k, v in sorted(samples.items()) if k % sample_every == 0},
        "stage_seconds": {k: round(v, 2) for k, v in timer.totals().items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=10000)
    p.add_argument("--size", default="128x96", help="WxH")
    p.add_argument("--face-period", type=int, default=1000)
    p.add_argument("--face-frames", type=int, default=10)
    p.add_argument("--from-frame", type=int, default=1000)
    p.add_argument("--engine", type=Path, default=ROOT / "models" / "demo-onnx")
    p.add_argument("--print-every", type=int, default=1000, help="RSS samples reported (frames)")
    p.add_argument(
        "--low-memory",
        action="store_true",
        help="ONNX Runtime without its CPU memory arena and pre-packed weights (BackendOptions(low_memory=True))",
    )
    p.add_argument("--workers", type=int, default=2, help="engine workers (VideoRestorer with that many restorers)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(
            args.frames,
            (width, height),
            args.face_period,
            args.face_frames,
            args.from_frame,
            args.engine,
            Path(tmp),
            sample_every=args.print_every,
            low_memory=args.low_memory,
            workers=args.workers,
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
