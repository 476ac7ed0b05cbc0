"""``make demo`` (flipnet_rt.demo): the astronaut face, its fixed-seed LQ, the outputs and the scores."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("skimage")
pytest.importorskip("cv2")


def test_astronaut_faces_are_framed_variants_of_one_face():
    from flipnet_rt.demo import ASTRONAUT_VARIANTS, astronaut_faces

    faces = astronaut_faces(64)
    assert len(faces) == len(ASTRONAUT_VARIANTS)
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in faces)
    np.testing.assert_array_equal(faces[0], astronaut_faces(64)[0])
    assert len({f.tobytes() for f in faces}) == len(faces)


def test_demo_writes_its_outputs_and_scores(tmp_path, capsys):
    pytest.importorskip("torch")
    from flipnet_rt.demo import main

    assert main(["--model", "random:tiny", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "RANDOM" in out and out.count("PSNR") == 2 and out.count("SSIM") == 2
    for name in ("hq", "lq", "restored"):
        assert np.asarray(Image.open(tmp_path / f"{name}.png")).shape == (64, 64, 3)
    assert np.asarray(Image.open(tmp_path / "side_by_side.png")).shape == (256, 768, 3)


def test_demo_refuses_a_missing_model(tmp_path, capsys):
    from flipnet_rt.demo import main

    assert main(["--model", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert "no such directory" in capsys.readouterr().err
