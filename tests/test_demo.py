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
    assert "RANDOM" in out and out.count("PSNR") == 4 and out.count("SSIM") == 4
    for name in ("hq", "lq", "restored"):
        assert np.asarray(Image.open(tmp_path / f"{name}.png")).shape == (64, 64, 3)
    assert np.asarray(Image.open(tmp_path / "side_by_side.png")).shape == (256, 768, 3)
    for name in ("group_hq", "group_lq", "group_restored"):  # the whole picture keeps its size
        assert np.asarray(Image.open(tmp_path / f"{name}.png")).shape == (270, 640, 3)
    assert "3 of 3 faces found and restored" in out, out
    assert "pixels away from the faces unchanged: True" in out


def test_the_demo_engine_restores_the_group_picture(tmp_path, capsys):
    """The shipped engine, no torch: every face of the degraded group picture is found, and the
    faces' boxes come back closer to the HQ than the input was at seed 0 (measured with demo model
    version 2, fidelity auto: PSNR 19.45 -> 20.13 dB, SSIM 0.455 -> 0.513)."""
    from flipnet_rt.demo import DEMO_ENGINE, main

    assert main(["--model", str(DEMO_ENGINE), "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    print("\n".join(lines))
    assert any("3 of 3 faces found and restored" in line for line in lines)
    scores = [line.split() for line in lines if line.strip().startswith("faces,")]
    (_, _, _, psnr_in, _, _, ssim_in), (_, _, _, psnr_out, _, _, ssim_out) = scores
    assert float(psnr_out) > float(psnr_in) and float(ssim_out) > float(ssim_in)


def test_demo_refuses_a_missing_model(tmp_path, capsys):
    from flipnet_rt.demo import main

    assert main(["--model", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert "no such directory" in capsys.readouterr().err
