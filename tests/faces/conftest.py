"""Fixtures of the faces tests: real faces from ../shared/data, the detectors, the demo engine, and a
generated group picture of the (public-domain) astronaut with known landmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from faces.support import ASTRONAUT_LANDMARKS, DATA, DEMO_ENGINE, require


@pytest.fixture(scope="session")
def lfw_val() -> list[Path]:
    folder = DATA / "lfw" / "val"
    require(folder.is_dir(), f"{folder} (real LFW faces beside the project)")
    return sorted(folder.glob("*.jpg"))


@pytest.fixture(scope="session")
def real_lq() -> list[Path]:
    folder = DATA / "real_lq"
    require(folder.is_dir(), f"{folder} (real LQ faces beside the project)")
    return sorted(folder.glob("*.png"))


@pytest.fixture(scope="session")
def mtcnn():

    from flipnet_rt.faces.detectors import load_detector

    return load_detector("mtcnn")


@pytest.fixture(scope="session")
def retinaface():
    from flipnet_rt.faces.detectors import load_detector

    return load_detector("retinaface")


@pytest.fixture(scope="session")
def dlib_detector():
    import importlib.util

    require(
        importlib.util.find_spec("dlib") is not None
        and importlib.util.find_spec("face_recognition_models") is not None,
        "dlib-bin and face-recognition-models (the eval extra)",
    )
    from flipnet_rt.faces.detectors import load_detector

    return load_detector("dlib")


@pytest.fixture(scope="session")
def demo_restorer():
    require((DEMO_ENGINE / "manifest.json").is_file(), f"{DEMO_ENGINE} (the shipped demo engine)")
    from flipnet_rt.runtime.restorer import Restorer

    return Restorer.load(DEMO_ENGINE, backend="onnxruntime", device="cpu")


@pytest.fixture(scope="session")
def astronaut_group():
    """A 1280x720 picture with the astronaut's face 3 times (eye distance 30, 60, 100 px; -20, 5,
    25 degrees) on a generated background; returns ``(image, [Face])`` with the true landmarks."""
    from skimage import data

    from flipnet_rt.faces.types import Face
    from flipnet_rt.imaging.scene import background, place_face

    rng = np.random.default_rng(15)
    canvas = background(720, 1280, rng)
    faces = []
    for centre, d, angle in (((200, 300), 30.0, -20.0), ((560, 400), 60.0, 5.0), ((1000, 330), 100.0, 25.0)):
        placed = place_face(canvas, data.astronaut(), ASTRONAUT_LANDMARKS, centre, d, angle)
        lo, hi = placed.landmarks.min(0), placed.landmarks.max(0)
        pad = 0.8 * d
        faces.append(Face(box=np.r_[lo - pad, hi + pad], score=1.0, landmarks=placed.landmarks))
    return canvas, faces
