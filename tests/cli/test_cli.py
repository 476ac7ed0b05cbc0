"""The command line end to end on random:tiny, corrupt inputs included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import face_like
from PIL import Image

from flipnet_rt.cli.main import main

FAST = ["--model", "random:tiny", "--steps", "2"]
ALIGNED = [*FAST, "--aligned"]  # restore: the inputs are face crops (whole images are tests/faces' and below)


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
    code = main(["restore", str(inputs), "-o", str(tmp_path / "out"), *ALIGNED, "--batch-size", "2"])
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
    args = [str(inputs / "a.png"), *ALIGNED, "--seed", "3"]
    assert main(["restore", *args, "-o", str(tmp_path / "1")]) == 0
    assert main(["restore", *args, "-o", str(tmp_path / "2")]) == 0
    one, two = (np.asarray(Image.open(tmp_path / d / "a.png")) for d in ("1", "2"))
    assert np.array_equal(one, two)


def test_batch_size_does_not_change_results(inputs, tmp_path):
    files = [str(inputs / "a.png"), str(inputs / "c.jpg")]
    assert main(["restore", *files, "-o", str(tmp_path / "b1"), *ALIGNED, "--batch-size", "1"]) == 0
    assert main(["restore", *files, "-o", str(tmp_path / "b2"), *ALIGNED, "--batch-size", "2"]) == 0
    for name in ("a.png", "c.png"):
        a, b = (np.asarray(Image.open(tmp_path / d / name)).astype(int) for d in ("b1", "b2"))
        assert np.abs(a - b).max() <= 1


def test_output_into_the_input_folder_never_overwrites(tmp_path):
    Image.fromarray(face_like(64)).save(tmp_path / "x.png")
    original = (tmp_path / "x.png").read_bytes()
    code = main(["restore", str(tmp_path / "x.png"), "-o", str(tmp_path), *ALIGNED])
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
    assert main(["restore", str(tmp_path / "ghost.png"), "-o", str(tmp_path / "o"), *ALIGNED]) == 1
    assert "ghost.png" in capsys.readouterr().err
    Image.fromarray(face_like(64)).save(tmp_path / "x.png")
    assert (
        main(["restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "nomodel")]) == 2
    )
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
        [*cmd, "restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), *ALIGNED],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "x.png").is_file()
    assert "random weights" in done.stderr


def test_ddim_with_eta_from_the_command_line(inputs, tmp_path):
    args = [
        str(inputs / "a.png"),
        "-o",
        str(tmp_path / "o"),
        *ALIGNED,
        "--sampler",
        "ddim",
        "--eta",
        "1",
        "--spacing",
        "trailing",
    ]
    assert main(["restore", *args]) == 0


def test_color_fix_from_the_command_line(inputs, tmp_path, capsys):
    plain, fixed = tmp_path / "plain", tmp_path / "fixed"
    assert main(["restore", str(inputs / "a.png"), "-o", str(plain), *ALIGNED]) == 0
    assert main(["restore", str(inputs / "a.png"), "-o", str(fixed), *ALIGNED, "--color-fix", "3"]) == 0
    a, b = (np.asarray(Image.open(d / "a.png")) for d in (plain, fixed))
    assert not np.array_equal(a, b)
    capsys.readouterr()
    assert main(["restore", str(inputs / "a.png"), "-o", str(tmp_path / "bad"), *ALIGNED, "--color-fix", "-1"]) == 2
    err = capsys.readouterr().err
    assert "color_fix: -1 levels is outside [0, 10]" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- option plumbing (issue 19)


class RestoreSpy:
    """Records what every ``Restorer.restore``/``degrade`` call receives, then runs it for real."""

    def __init__(self, monkeypatch):
        from flipnet_rt.runtime.restorer import Restorer

        self.calls: list[dict] = []
        for method in ("restore", "degrade"):
            original = getattr(Restorer, method)

            def spy(restorer, images, options=None, seeds=None, _original=original, _method=method):
                self.calls.append(
                    {
                        "method": _method,
                        "options": options,
                        "seeds": list(seeds),
                        "cond_cache": restorer.cond_cache,
                        "restorer": restorer,
                    }
                )
                return _original(restorer, images, options, seeds)

            monkeypatch.setattr(Restorer, method, spy)


SAMPLING_FLAGS = [
    "--strength",
    "0.5",
    "--phi",
    "0.25",
    "--guidance",
    "2.75",
    "--cond-t",
    "40",
    "--no-cond-cache",
    "--sampler",
    "ddim",
    "--spacing",
    "trailing",
    "--steps",
    "4",
    "--seed",
    "9",
]


@pytest.mark.parametrize("command", ["restore", "degrade"])
def test_sampling_flags_reach_the_restorer(inputs, tmp_path, monkeypatch, command):
    """Every sampling flag arrives in the options of the Restorer call, and the written image is
    the library's for those options: ``Restorer.load(..., cond_cache=False).restore(img, opts, seeds)``."""
    spy = RestoreSpy(monkeypatch)
    out = tmp_path / "o"
    crops = ["--aligned"] if command == "restore" else []  # face crops: the Restorer runs on them directly
    assert (
        main([command, str(inputs / "a.png"), "-o", str(out), "--model", "random:tiny", *crops, *SAMPLING_FLAGS]) == 0
    )
    (call,) = spy.calls
    options = call["options"]
    assert call["method"] == command and call["cond_cache"] is False
    assert (options.strength, options.phi, options.guidance, options.t_cond, options.steps, options.seed) == (
        0.5,
        0.25,
        2.75,
        40,
        4,
        9,
    )
    assert (options.sampler.value, options.spacing.value) == ("ddim", "trailing")
    from flipnet_rt.config.options import key_seed

    assert call["seeds"] == [key_seed(9, "a.png")]

    from flipnet_rt.config.options import SamplingOptions
    from flipnet_rt.runtime.restorer import Restorer

    spy.calls.clear()
    library = Restorer.load("random:tiny", cond_cache=False)
    want = SamplingOptions(
        sampler="ddim", steps=4, spacing="trailing", guidance=2.75, phi=0.25, t_cond=40, strength=0.5, seed=9
    )
    image = np.asarray(Image.open(inputs / "a.png").convert("RGB"))
    expected = getattr(library, command)([image], want, [key_seed(9, "a.png")])[0]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), expected)


def test_defaults_apply_when_no_flag_is_given(inputs, tmp_path, monkeypatch):
    spy = RestoreSpy(monkeypatch)
    assert (
        main(["restore", str(inputs / "a.png"), "-o", str(tmp_path / "o"), "--model", "random:tiny", "--aligned"]) == 0
    )
    (call,) = spy.calls
    restorer = call["restorer"]
    assert call["cond_cache"] is True
    assert call["options"] == restorer.options()  # the model's flipnet.json defaults, seed 0


@pytest.mark.parametrize(
    "flag, value, field",
    [
        ("--strength", "0.5", "strength"),
        ("--phi", "1.5", "phi"),
        ("--guidance", "1.0", "guidance"),
        ("--cond-t", "100", "t_cond"),
        ("--eta", "0.5", "eta"),
    ],
)
def test_each_sampling_flag_changes_the_image(inputs, tmp_path, flag, value, field):
    """Each flag on its own changes the restored image against the defaults (it is not dropped)."""
    base, changed = tmp_path / "base", tmp_path / "changed"
    extra = ["--aligned", *(["--sampler", "ddim"] if flag == "--eta" else [])]
    assert main(["restore", str(inputs / "a.png"), "-o", str(base), *ALIGNED, *extra]) == 0
    assert main(["restore", str(inputs / "a.png"), "-o", str(changed), *ALIGNED, *extra, flag, value]) == 0
    a, b = (np.asarray(Image.open(d / "a.png")).astype(int) for d in (base, changed))
    print(f"{flag} {value}: max |diff| {np.abs(a - b).max()} grey levels")
    assert np.abs(a - b).max() > 1


def test_no_cond_cache_gives_the_same_image_through_the_joint_graph(inputs, tmp_path, monkeypatch):
    spy = RestoreSpy(monkeypatch)
    cached, joint = tmp_path / "cached", tmp_path / "joint"
    assert main(["restore", str(inputs / "a.png"), "-o", str(cached), *ALIGNED]) == 0
    assert main(["restore", str(inputs / "a.png"), "-o", str(joint), *ALIGNED, "--no-cond-cache"]) == 0
    assert [c["cond_cache"] for c in spy.calls] == [True, False]
    a, b = (np.asarray(Image.open(d / "a.png")).astype(int) for d in (cached, joint))
    assert np.abs(a - b).max() <= 1  # float32 reassociation only (tests/test_restorer.py: rel 1e-5)


def test_an_images_seed_is_its_output_path_not_its_place_in_the_job(inputs, tmp_path):
    """Adding a file that sorts first to a folder changes no other file's restoration (issue 30:
    seeds derive from --seed and the output's path under OUTDIR, not the position in the job)."""
    folder = tmp_path / "few"
    folder.mkdir()
    for name in ("b.png", "c.png"):
        (folder / name).write_bytes((inputs / "a.png").read_bytes())
    assert main(["degrade", str(folder), "-o", str(tmp_path / "1"), *FAST]) == 0
    Image.fromarray(face_like(64, 5)).save(folder / "a.png")
    assert main(["degrade", str(folder), "-o", str(tmp_path / "2"), *FAST]) == 0
    for name in ("b.png", "c.png"):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes(), name
    assert (tmp_path / "2" / "b.png").read_bytes() != (tmp_path / "2" / "c.png").read_bytes()  # own streams
