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
