"""The command line end to end on random:tiny, corrupt inputs included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flipnet_rt.cli.main import main
from helpers import face_like

FAST = ["--model", "random:tiny", "--steps", "2"]


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(face_like(64, 0)).save(folder / "a.png")
    Image.fromarray(face_like(80, 1)[:, :60]).save(folder / "sub" / "b.jpg")
    Image.fromarray(face_like(64, 2)).save(folder / "c.jpg")
    jpeg = (folder / "c.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "notes.png").write_text("this is not an image")
    return folder


def outputs(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_restore_folder_with_corrupt_files(inputs, tmp_path, capsys):
    before = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    code = main(["restore", str(inputs), "-o", str(tmp_path / "out"), *FAST, "--batch-size", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert outputs(tmp_path / "out") == ["a.png", "c.png", "sub/b.png"]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, err
    assert any("truncated.jpg" in line for line in errors)
    assert any("notes.png" in line for line in errors)
    assert "wrote 3 image(s)" in err
    assert Image.open(tmp_path / "out" / "sub" / "b.png").size == (60, 80)
    assert {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()} == before, "inputs untouched"


def test_restore_is_seeded(inputs, tmp_path):
    args = [str(inputs / "a.png"), *FAST, "--seed", "3"]
    assert main(["restore", *args, "-o", str(tmp_path / "1")]) == 0
    assert main(["restore", *args, "-o", str(tmp_path / "2")]) == 0
    one, two = (np.asarray(Image.open(tmp_path / d / "a.png")) for d in ("1", "2"))
    assert np.array_equal(one, two)


def test_batch_size_does_not_change_results(inputs, tmp_path):
    files = [str(inputs / "a.png"), str(inputs / "c.jpg")]
    assert main(["restore", *files, "-o", str(tmp_path / "b1"), *FAST, "--batch-size", "1"]) == 0
    assert main(["restore", *files, "-o", str(tmp_path / "b2"), *FAST, "--batch-size", "2"]) == 0
    for name in ("a.png", "c.png"):
        a, b = (np.asarray(Image.open(tmp_path / d / name)).astype(int) for d in ("b1", "b2"))
        assert np.abs(a - b).max() <= 1


def test_output_into_the_input_folder_never_overwrites(tmp_path):
    Image.fromarray(face_like(64)).save(tmp_path / "x.png")
    original = (tmp_path / "x.png").read_bytes()
    code = main(["restore", str(tmp_path / "x.png"), "-o", str(tmp_path), *FAST])
    assert code == 1
    assert (tmp_path / "x.png").read_bytes() == original


def test_degrade_variants(inputs, tmp_path):
    code = main(["degrade", str(inputs / "a.png"), "-o", str(tmp_path / "d"), "--variants", "3", *FAST])
    assert code == 0
    names = outputs(tmp_path / "d")
    assert names == ["a_v0.png", "a_v1.png", "a_v2.png"]
    images = [np.asarray(Image.open(tmp_path / "d" / n)) for n in names]
    assert not np.array_equal(images[0], images[1]), "variants draw different noise"


def test_missing_input_and_bad_model(tmp_path, capsys):
    assert main(["restore", str(tmp_path / "ghost.png"), "-o", str(tmp_path / "o"), *FAST]) == 1
    assert "ghost.png" in capsys.readouterr().err
    Image.fromarray(face_like(64)).save(tmp_path / "x.png")
    assert main(["restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "nomodel")]) == 2
    err = capsys.readouterr().err
    assert "nomodel" in err and "random:<config>" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_usage_errors_exit_2(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["restore", "x.png", "-o", str(tmp_path), "--sampler", "plms"])
    assert exc.value.code == 2


def test_no_model_given_names_the_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FLIPNET_MODEL", raising=False)
    with pytest.raises(SystemExit):
        main(["restore", "x.png", "-o", str(tmp_path)])
    assert "--model random:tiny" in capsys.readouterr().err


def test_info_with_model(capsys):
    assert main(["info", "--model", "random:tiny"]) == 0
    out = capsys.readouterr().out
    for key in ("flipnet-rt", "torch", "onnxruntime providers", "boosthub layers", "config sha256"):
        assert key in out


def test_console_entry_point(tmp_path):
    """The installed ``flipnet-rt`` command, as a user runs it (a real process, real exit code)."""
    Image.fromarray(face_like(64)).save(tmp_path / "x.png")
    exe = Path(sys.executable).with_name("flipnet-rt")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "flipnet_rt"]
    done = subprocess.run(
        [*cmd, "restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), *FAST],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "x.png").is_file()
    assert "random weights" in done.stderr


def test_ddim_with_eta_from_the_command_line(inputs, tmp_path):
    args = [str(inputs / "a.png"), "-o", str(tmp_path / "o"), *FAST, "--sampler", "ddim", "--eta", "1", "--spacing", "trailing"]
    assert main(["restore", *args]) == 0


def test_color_fix_from_the_command_line(inputs, tmp_path, capsys):
    plain, fixed = tmp_path / "plain", tmp_path / "fixed"
    assert main(["restore", str(inputs / "a.png"), "-o", str(plain), *FAST]) == 0
    assert main(["restore", str(inputs / "a.png"), "-o", str(fixed), *FAST, "--color-fix", "3"]) == 0
    a, b = (np.asarray(Image.open(d / "a.png")) for d in (plain, fixed))
    assert not np.array_equal(a, b)
    capsys.readouterr()
    assert main(["restore", str(inputs / "a.png"), "-o", str(tmp_path / "bad"), *FAST, "--color-fix", "-1"]) == 2
    err = capsys.readouterr().err
    assert "color_fix: -1 levels is outside [0, 10]" in err and len(err.strip().splitlines()) == 1
