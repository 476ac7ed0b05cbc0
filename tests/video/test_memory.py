"""Memory does not grow with a video's length (the closing note reports the 10,000-frame run of
benchmarks/video_memory.py; these sample shorter clips). RSS is read from /proc (Linux)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from video.clips import cfr_pts, write_clip
from video.processors import IdentityProcessor

from flipnet_rt.video.transcode import transcode

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RSS from /proc/self/statm")
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def run_sampled(src: Path, out: Path, processor, start: int) -> tuple[float, float]:
    """RSS at frame ``start`` and the peak of the samples after it (every 25 frames)."""
    samples: dict[int, float] = {}

    def probe(written: int) -> None:
        if written % 25 == 0:
            samples[written] = rss_mb()

    transcode(src, out, processor, on_frame=probe, queue_depth=8)
    return samples[start], max(v for k, v in samples.items() if k >= start)


@pytest.mark.slow
def test_io_memory_is_flat_over_2000_frames(tmp_path):
    src = write_clip(tmp_path / "long.mp4", cfr_pts(2000), size=(64, 48))
    base, peak = run_sampled(src, tmp_path / "out.mp4", IdentityProcessor(), start=500)
    print(
        f"identity transcode of 2000 frames: RSS {base:.1f} MB at frame 500, peak after {peak:.1f} MB "
        f"(+{peak - base:.2f} MB)"
    )
    assert peak - base <= 5.0  # a leak of one 64x48 frame per frame would be 27 MB


@pytest.mark.slow
def test_restorer_memory_is_flat(demo_faces, tmp_path):
    """800 frames, the face shown for 8 frames every 200 (4 tracks, 32 faces restored; MTCNN
    searches every 10th frame whole and follows the face between; one engine worker, the
    10,000-frame benchmark runs two). ONNX Runtime grows its arena on the first calls of each batch shape,
    so the measurement starts after two face segments (frame 450), as the 10,000-frame run
    starts at frame 1,000."""
    from synthetic.video import face_scene, noisy

    from flipnet_rt.video.pipeline import VideoOptions, VideoRestorer

    with_face, _ = face_scene((128, 96), eye_distance=15.0)
    without = face_scene((128, 96), faces=0)[0]
    rng = np.random.default_rng(0)
    src = write_clip(
        tmp_path / "long.mp4",
        cfr_pts(800),
        size=(128, 96),
        frame=lambda i: noisy(with_face if i % 200 < 8 else without, 3.0, rng),
    )
    video = VideoRestorer(demo_faces, VideoOptions(batch_size=8))
    base, peak = run_sampled(src, tmp_path / "out.mp4", video, start=450)
    print(
        f"restoring 800 frames: RSS {base:.1f} MB at frame 450, peak after {peak:.1f} MB (+{peak - base:.2f} MB); "
        f"{video.tracks_seen} tracks"
    )
    assert video.tracks_seen == 4
    assert peak - base <= 20.0
