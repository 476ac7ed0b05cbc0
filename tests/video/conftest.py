"""Shared fixtures of the video tests: small generated clips (see :mod:`video.clips`)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("av", reason="the video tests need PyAV: pip install 'flipnet-rt[video]'")

from video.clips import cfr_pts, vfr_pts, write_clip  # noqa: E402


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Small clips shared by the video tests: 60 frames CFR, 60 frames VFR (both with audio)."""
    root = tmp_path_factory.mktemp("clips")
    return {
        "cfr": write_clip(root / "cfr.mp4", cfr_pts(60)),
        "vfr": write_clip(root / "vfr.mp4", vfr_pts(60)),
    }


@pytest.fixture(scope="session")
def demo_engine() -> Path:
    """The shipped demo engine (64 px)."""
    from video.clips import require

    engine = Path(__file__).resolve().parents[2] / "models" / "demo-onnx"
    require((engine / "manifest.json").is_file(), f"{engine} (the shipped demo engine)")
    return engine


@pytest.fixture(scope="session")
def demo_video_restorer(demo_engine):
    """The demo engine's Restorer on ONNX Runtime CPU (what ``demo_faces`` wraps)."""
    from flipnet_rt.runtime.restorer import Restorer

    return Restorer.load(demo_engine, backend="onnxruntime", device="cpu")


@pytest.fixture(scope="session")
def demo_faces(demo_video_restorer):
    """A FaceRestorer on the shipped demo engine (64 px, ONNX Runtime CPU) with MTCNN (shipped weights)."""
    from flipnet_rt.faces.detectors import load_detector
    from flipnet_rt.faces.pipeline import FaceRestorer

    return FaceRestorer(demo_video_restorer, load_detector("mtcnn"))
