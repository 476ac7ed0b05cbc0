"""``flipnet-rt restore`` on whole images (the default): detect, restore, paste back; report and saved faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flipnet_rt.cli.main import main

ENGINE = Path(__file__).resolve().parents[2] / "models" / "demo-onnx"
pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    from flipnet_rt.demo import group_picture

    folder = tmp_path_factory.mktemp("whole")
    picture, _ = group_picture(0)
    Image.fromarray(picture).save(folder / "group.png")
    Image.fromarray(np.full((40, 70, 3), 120, np.uint8)).save(folder / "empty.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return folder


def test_whole_images_report_and_saved_faces(pictures, tmp_path, capsys):
    out, report, saved = tmp_path / "out", tmp_path / "report.json", tmp_path / "faces"
    code = main(
        [
            "restore",
            str(pictures),
            "-o",
            str(out),
            "--model",
            str(ENGINE),
            "--report",
            str(report),
            "--save-faces",
            str(saved),
            "--batch-size",
            "2",
            "--seed",
            "5",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1  # the broken file; the other two are written
    assert "broken.jpg" in err and "warning:" in err and "empty.png: no face found; written unchanged" in err
    group_in = np.asarray(Image.open(pictures / "group.png"))
    group_out = np.asarray(Image.open(out / "group.png"))
    assert group_out.shape == group_in.shape and not np.array_equal(group_out, group_in)
    np.testing.assert_array_equal(
        np.asarray(Image.open(out / "empty.png")), np.asarray(Image.open(pictures / "empty.png"))
    )

    data = json.loads(report.read_text())
    entries = {Path(e["image"]).name: e for e in data["images"]}
    assert set(entries) == {"group.png", "empty.png", "broken.jpg"}
    assert entries["broken.jpg"]["error"] and entries["empty.png"]["faces"] == []
    faces = entries["group.png"]["faces"]
    assert len(faces) == 3 and all(f["restored"] for f in faces) and entries["group.png"]["seed"] is not None
    assert all(len(f["box"]) == 4 and set(f["landmarks"]) >= {"left_eye", "right_eye"} for f in faces)
    assert len({f["seed"] for f in faces}) == 3  # one stream per face
    for sub in ("cropped_faces", "restored_faces", "cmp"):
        assert len(list((saved / sub).glob("group_*.png"))) == 3

    # pixels away from every face box are the input's, bit for bit
    keep = np.ones(group_in.shape[:2], bool)
    for f in faces:
        x0, y0, x1, y1 = (int(v) for v in f["box"])
        w, h = x1 - x0, y1 - y0
        keep[max(y0 - h, 0) : y1 + h, max(x0 - w, 0) : x1 + w] = False
    np.testing.assert_array_equal(group_out[keep], group_in[keep])


def test_face_options_select_and_results_do_not_depend_on_the_batch(pictures, tmp_path):
    group = str(pictures / "group.png")
    base = ["--model", str(ENGINE), "--seed", "5"]
    assert main(["restore", group, "-o", str(tmp_path / "b1"), *base, "--batch-size", "1"]) == 0
    assert main(["restore", group, "-o", str(tmp_path / "b3"), *base, "--batch-size", "3"]) == 0
    one, three = (np.asarray(Image.open(tmp_path / d / "group.png")) for d in ("b1", "b3"))
    assert int(np.abs(one.astype(int) - three).max()) <= 1  # batch-invariant up to float rounding

    report = tmp_path / "r.json"
    assert (
        main(["restore", group, "-o", str(tmp_path / "one"), *base, "--max-faces", "1", "--report", str(report)]) == 0
    )
    faces = json.loads(report.read_text())["images"][0]["faces"]
    assert sum(f["restored"] for f in faces) == 1 and any(
        f["reason"].startswith("over max_faces") for f in faces if not f["restored"]
    )


def test_fidelity_lands_in_the_report_and_a_bad_one_is_one_line(pictures, tmp_path, capsys):
    group = str(pictures / "group.png")
    report = tmp_path / "report.json"
    base = ["--model", str(ENGINE), "--seed", "5"]
    assert main(["restore", group, "-o", str(tmp_path / "w"), *base, "--fidelity", "0.3", "--report", str(report)]) == 0
    faces = json.loads(report.read_text())["images"][0]["faces"]
    assert len(faces) == 3 and all(f["fidelity"] == 0.3 and f["fidelity_source"] == "fixed" for f in faces)
    assert main(["restore", group, "-o", str(tmp_path / "one"), *base, "--fidelity", "1"]) == 0
    assert main(["restore", group, "-o", str(tmp_path / "zero"), *base, "--fidelity", "0"]) == 0
    one, zero = (np.asarray(Image.open(tmp_path / d / "group.png")) for d in ("one", "zero"))
    source = np.asarray(Image.open(group))
    # W = 1 pastes the input crops back: within a grey level or two of the picture (warp there and back)
    print(
        f"W = 1: mean |out - in| {np.abs(one.astype(int) - source).mean():.3f}; "
        f"W = 0: {np.abs(zero.astype(int) - source).mean():.3f}"
    )
    assert np.abs(one.astype(int) - source).mean() < np.abs(zero.astype(int) - source).mean()
    capsys.readouterr()
    for bad in ("1.5", "most"):
        code = main(["restore", group, "-o", str(tmp_path / "bad"), *base, "--fidelity", bad])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0 and err.startswith("error: fidelity: ") and "auto" in err
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
