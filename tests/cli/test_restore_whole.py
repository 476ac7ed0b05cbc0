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


def test_detector_flags_reach_the_detector_and_the_report(pictures, tmp_path, capsys):
    """Issue 29: RetinaFace by default; with --detect-angles the faces of the group turned on its side
    come with their own eyes in order (the eye line turned 90 degrees: pointing down the image, so
    alignment turns each face upright), which a plain search gets wrong; --detect-size and the
    detector land in the report; bad values are one line."""
    group = np.asarray(Image.open(pictures / "group.png"))
    Image.fromarray(np.ascontiguousarray(np.rot90(group, -1))).save(tmp_path / "turned.png")
    base = ["--model", str(ENGINE), "--seed", "5"]
    eyes = {}
    for name, extra in (("plain", []), ("angles", ["--detect-angles", "0,90,180,270", "--detect-size", "960"])):
        report = tmp_path / f"{name}.json"
        assert (
            main(
                [
                    "restore",
                    str(tmp_path / "turned.png"),
                    "-o",
                    str(tmp_path / name),
                    *base,
                    *extra,
                    "--report",
                    str(report),
                ]
            )
            == 0
        )
        data = json.loads(report.read_text())
        points = [f["landmarks"] for f in data["images"][0]["faces"]]
        # the direction of each face's eye line (left eye -> right eye), in degrees from the image's x axis
        eyes[name] = sorted(
            round(
                float(
                    np.degrees(np.arctan2(p["right_eye"][1] - p["left_eye"][1], p["right_eye"][0] - p["left_eye"][0]))
                )
            )
            for p in points
        )
        assert data["meta"]["detector"] == "retinaface"
        if name == "angles":
            assert data["meta"]["detect_angles"] == [0, 90, 180, 270] and data["meta"]["detect_size"] == 960
    from flipnet_rt.demo import group_picture

    truth = sorted(  # the placed faces' eye lines, turned 90 degrees with the picture
        round(float(np.degrees(np.arctan2(*(t.landmarks[1] - t.landmarks[0])[::-1])))) + 90 for t in group_picture(0)[1]
    )
    print(f"eye lines in the turned group picture: truth {truth}, found {eyes}")
    assert len(eyes["angles"]) == 3 and max(abs(a - t) for a, t in zip(eyes["angles"], truth)) <= 10
    assert len(eyes["plain"]) != 3 or max(abs(a - t) for a, t in zip(eyes["plain"], truth)) > 20
    capsys.readouterr()
    for flags, message in (
        (["--detect-angles", "45"], "argument --detect-angles: '45'; give clockwise angles from 0, 90, 180, 270"),
        (["--detect-size", "8"], "--detect-size: 8 px; use 32 to 2048"),
        (
            ["--detector", "mtcnn", "--detect-size", "640"],
            "--detect-size: applies to the retinaface detector, not mtcnn",
        ),
    ):
        try:
            code = main(["restore", str(pictures / "group.png"), "-o", str(tmp_path / "bad"), *base, *flags])
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2 and message in err, err
