"""The command line's plumbing, fast (issue 19: the cli mutation group's tests): what every flag
parses to, which command runs, the usage errors and their exit codes, what reaches
``Restorer.load`` and the sampling options, and ``run_jobs``' handling of failures, reports and
saved faces.

The commands behind ``main`` (info, export, bench, ...) and the face restorer of whole images are
replaced at their seams by recorders: their own tests run them for real (tests/cli/test_cli.py and
tests/cli/test_restore_whole.py end to end). Where a restore runs here it runs for real, on the
session's tiny torch restorer.
"""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import face_like
from PIL import Image

import flipnet_rt.cli.main as cli
from flipnet_rt import __version__
from flipnet_rt.cli import jobs
from flipnet_rt.cli.main import build_parser, main
from flipnet_rt.config.options import SamplingOptions, key_seed
from flipnet_rt.faces.types import Face, FaceResult

DEFAULTS = dict(
    model=None,
    steps=None,
    sampler=None,
    spacing=None,
    guidance=None,
    phi=None,
    t_cond=None,
    strength=None,
    eta=None,
    color_fix=None,
    seed=0,
    batch_size=1,
    backend="auto",
    device="auto",
    cuda_graphs=False,
    low_memory=False,
    compile=False,
    cond_cache=True,
    verbose=False,
)
FACE_DEFAULTS = dict(
    detector="retinaface",
    detect_size=None,
    detect_angles=None,
    detect_thresholds=None,
    min_face_size=20.0,
    max_faces=0,
    only_center_face=False,
    keep_detail=True,
    fidelity="auto",
)


@pytest.fixture(autouse=True)
def no_model_env(monkeypatch):
    monkeypatch.delenv(cli.MODEL_ENV, raising=False)


def parse(*argv: str) -> dict:
    return vars(build_parser().parse_args(list(argv)))


def usage_error(capsys, argv) -> str:
    """The one line argparse prints for a usage error (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- parsing


def test_restore_and_degrade_defaults():
    assert parse("restore", "a.png", "b", "-o", "out") == dict(
        command="restore",
        inputs=["a.png", "b"],
        output=Path("out"),
        aligned=False,
        save_faces=None,
        report=None,
        **DEFAULTS,
        **FACE_DEFAULTS,
    )
    assert parse("degrade", "a.png", "--output", "out") == dict(
        command="degrade", inputs=["a.png"], output=Path("out"), variants=1, **DEFAULTS
    )


def test_every_flag_reaches_its_field():
    got = parse(
        "-v",
        "restore",
        "a.png",
        "-o",
        "out",
        "--model",
        "m",
        "--steps",
        "7",
        "--sampler",
        "euler",
        "--spacing",
        "linspace",
        "--guidance",
        "2.5",
        "--phi",
        "0.75",
        "--cond-t",
        "30",
        "--strength",
        "0.4",
        "--eta",
        "0.5",
        "--color-fix",
        "3",
        "--seed",
        "11",
        "--batch-size",
        "4",
        "--backend",
        "torch",
        "--device",
        "cpu",
        "--cuda-graphs",
        "--low-memory",
        "--compile",
        "--no-cond-cache",
        "--aligned",
        "--save-faces",
        "faces",
        "--report",
        "r.json",
    )
    assert got == dict(
        command="restore",
        inputs=["a.png"],
        output=Path("out"),
        model="m",
        steps=7,
        sampler="euler",
        spacing="linspace",
        guidance=2.5,
        phi=0.75,
        t_cond=30,
        strength=0.4,
        eta=0.5,
        color_fix=3,
        seed=11,
        batch_size=4,
        backend="torch",
        device="cpu",
        cuda_graphs=True,
        low_memory=True,
        compile=True,
        cond_cache=False,
        verbose=True,
        aligned=True,
        save_faces=Path("faces"),
        report=Path("r.json"),
        **FACE_DEFAULTS,
    )
    assert type(got["steps"]) is int and type(got["guidance"]) is float and type(got["seed"]) is int
    assert parse("degrade", "a.png", "-o", "o", "--variants", "3")["variants"] == 3


def test_the_model_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("FLIPNET_MODEL", "from-env")
    assert parse("restore", "a.png", "-o", "o")["model"] == "from-env"
    assert parse("info")["model"] == "from-env"
    assert parse("restore", "a.png", "-o", "o", "--model", "given")["model"] == "given"


@pytest.mark.parametrize(
    "flag, allowed, refused",
    [
        ("--sampler", ("ddim", "dpmpp-2m", "euler"), "plms"),
        ("--spacing", ("leading", "trailing", "linspace"), "karras"),
        ("--backend", ("auto", "tensorrt", "onnxruntime", "torch"), "openvino"),
        ("--device", ("auto", "cpu", "cuda"), "gpu"),
    ],
)
def test_choices(capsys, flag, allowed, refused):
    field = flag[2:]
    for value in allowed:
        assert parse("restore", "a.png", "-o", "o", flag, value)[field] == value
    line = usage_error(capsys, ["restore", "a.png", "-o", "o", flag, refused])
    assert f"argument {flag}: invalid choice: '{refused}'" in line


def test_required_arguments(capsys):
    assert "the following arguments are required: -o/--output" in usage_error(capsys, ["restore", "a.png"])
    assert "the following arguments are required: INPUT" in usage_error(capsys, ["degrade", "-o", "o"])
    assert "required: command" in usage_error(capsys, [])


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"flipnet-rt {__version__}"


# ----------------------------------------------------------------------------- main


@pytest.fixture()
def commands(monkeypatch):
    """Every command's entry point replaced by a recorder returning its own exit code."""
    calls = []

    def recorder(name, code):
        def run(arg, **kwargs):
            calls.append((name, arg, kwargs))
            return code

        return run

    monkeypatch.setattr(cli.info_cmd, "run", recorder("info", 11))
    for index, module in enumerate((cli.engines, cli.bench, cli.evaluate, cli.serve, cli.video, cli.cluster)):
        monkeypatch.setattr(module, "run", recorder(module.__name__.rsplit(".", 1)[1], 12 + index))
    monkeypatch.setattr(cli, "run_jobs", recorder("jobs", 20))
    return calls


@pytest.mark.parametrize(
    "argv, name, code",
    [
        (["export", "--model", "m", "-o", "x"], "engines", 12),
        (["build", "E"], "engines", 12),
        (["verify", "E", "--model", "m"], "engines", 12),
        (["bench", "--model", "m"], "bench", 13),
        (["eval", "--hq", "d", "--model", "m"], "evaluate", 14),
        (["serve", "--model", "m"], "serve", 15),
        (["export-triton", "E", "-o", "R"], "serve", 15),
        (["video", "in.mp4", "-o", "out.mp4", "--model", "m"], "video", 16),
        (["cluster", "restore", "a.png", "-o", "o", "--model", "m"], "cluster", 17),
    ],
)
def test_each_command_runs_its_own_entry_point(commands, argv, name, code):
    assert main(argv) == code
    (called,) = commands
    assert called[0] == name and called[1].command == argv[0] and called[2] == {}


def test_info_gets_the_model_and_jobs_get_the_variants(commands):
    assert main(["info", "--model", "m"]) == 11
    assert main(["restore", "a.png", "-o", "o", "--model", "m"]) == 20
    assert main(["degrade", "a.png", "-o", "o", "--model", "m", "--variants", "3"]) == 20
    info, restore, degrade = commands
    assert info[:2] == ("info", "m")
    assert restore[1].command == "restore" and restore[2] == {"variants": 1}
    assert degrade[1].command == "degrade" and degrade[2] == {"variants": 3}


def test_job_usage_errors_name_the_fix(commands, capsys):
    assert usage_error(capsys, ["restore", "a.png", "-o", "o"]) == (
        "flipnet-rt: error: no model: pass --model DIR or --model random:tiny, or set $FLIPNET_MODEL"
    )
    assert usage_error(capsys, ["restore", "a.png", "-o", "o", "--model", "m", "--batch-size", "0"]) == (
        "flipnet-rt: error: --batch-size must be 1 or more"
    )
    assert usage_error(capsys, ["degrade", "a.png", "-o", "o", "--model", "m", "--variants", "0"]) == (
        "flipnet-rt: error: --variants must be 1 or more"
    )
    assert main(["restore", "a.png", "-o", "o", "--model", "m", "--batch-size", "1"]) == 20  # 1 is allowed
    assert main(["degrade", "a.png", "-o", "o", "--model", "m", "--variants", "1"]) == 20
    assert [c[0] for c in commands] == ["jobs", "jobs"]


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(args, variants):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_jobs", interrupted)
    assert main(["restore", "a.png", "-o", "o", "--model", "m"]) == 130
    assert capsys.readouterr().err == ("interrupted; images already written are complete, nothing partial was left\n")


@pytest.mark.parametrize(
    "flag, level", [([], logging.WARNING), (["-v"], logging.DEBUG), (["--verbose"], logging.DEBUG)]
)
def test_verbose_sets_debug_logging(monkeypatch, commands, flag, level):
    seen = {}
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: seen.update(kwargs))
    main([*flag, "info"])
    assert seen == {"level": level, "format": "%(levelname)s: %(message)s"}


# ----------------------------------------------------------------------------- load_restorer


def test_load_restorer_hands_every_flag_on(monkeypatch, tiny_restorer):
    from flipnet_rt.backends.registry import BackendOptions
    from flipnet_rt.runtime.restorer import Restorer

    seen = {}

    def load(model, **kwargs):
        seen.update(model=model, **kwargs)
        return tiny_restorer

    monkeypatch.setattr(Restorer, "load", load)
    args = build_parser().parse_args(
        [
            "restore",
            "a.png",
            "-o",
            "o",
            "--model",
            "m",
            "--backend",
            "torch",
            "--device",
            "cpu",
            "--no-cond-cache",
            "--cuda-graphs",
            "--compile",
            "--low-memory",
            "--sampler",
            "ddim",
            "--steps",
            "3",
            "--spacing",
            "trailing",
            "--guidance",
            "2.0",
            "--phi",
            "0.5",
            "--cond-t",
            "20",
            "--strength",
            "0.5",
            "--eta",
            "0.25",
            "--seed",
            "7",
            "--color-fix",
            "2",
        ]
    )
    restorer, options = jobs.load_restorer(args, threads=3)
    assert restorer is tiny_restorer
    assert seen == dict(
        model="m",
        backend="torch",
        device="cpu",
        cond_cache=False,
        options=BackendOptions(cuda_graphs=True, compile=True, low_memory=True, threads=3),
    )
    assert options == SamplingOptions.from_config(
        tiny_restorer.config,
        sampler="ddim",
        steps=3,
        spacing="trailing",
        guidance=2.0,
        phi=0.5,
        t_cond=20,
        strength=0.5,
        eta=0.25,
        seed=7,
        color_fix=2,
    )

    seen.clear()
    restorer, options = jobs.load_restorer(build_parser().parse_args(["restore", "a.png", "-o", "o", "--model", "m"]))
    assert seen == dict(
        model="m",
        backend="auto",
        device="auto",
        cond_cache=True,
        options=BackendOptions(),
    )
    assert options == tiny_restorer.options()  # the model's defaults, seed 0


@pytest.mark.parametrize("error", [OSError("no such folder"), ValueError("not an engine"), KeyError("unet")])
def test_load_errors_become_one_usage_error(monkeypatch, error):
    from flipnet_rt.runtime.restorer import Restorer

    def load(model, **kwargs):
        raise error

    monkeypatch.setattr(Restorer, "load", load)
    with pytest.raises(jobs.UsageError) as info:
        jobs.load_restorer(build_parser().parse_args(["restore", "a.png", "-o", "o", "--model", "m"]))
    assert str(info.value) == f"--model m: {error}"


def test_a_bad_sampling_option_is_a_usage_error(tiny_restorer, monkeypatch):
    from flipnet_rt.runtime.restorer import Restorer

    closed = []
    loaded = SimpleNamespace(options=tiny_restorer.options, close=lambda: closed.append(1))
    monkeypatch.setattr(Restorer, "load", lambda model, **kwargs: loaded)
    args = build_parser().parse_args(["restore", "a.png", "-o", "o", "--model", "m", "--steps", "0"])
    with pytest.raises(jobs.UsageError) as info:  # checked against the model before any image is read
        jobs.load_restorer(args)
    assert str(info.value) == "steps: 0; use 1 or more"  # the option's own message, not the model's
    assert closed == [1]  # the loaded model is let go


# ----------------------------------------------------------------------------- run_jobs


@pytest.fixture()
def pictures(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name, seed in (("a.png", 0), ("sub/b.png", 1), ("c.png", 2)):
        Image.fromarray(face_like(32, seed)).save(folder / name)
    (folder / "broken.png").write_text("not an image")
    return folder


@pytest.fixture()
def tiny_load(monkeypatch, tiny_restorer):
    """``--model tiny`` loads the session's tiny torch restorer (no export, no reload)."""
    from flipnet_rt.runtime.restorer import Restorer

    monkeypatch.setattr(Restorer, "load", lambda model, **kwargs: tiny_restorer)
    return tiny_restorer


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def lines(err: str, prefix: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(prefix)]


def test_degrade_and_aligned_restore_run_the_restorer_with_each_images_seed(pictures, tmp_path, tiny_load, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "degrade",
                str(pictures / "a.png"),
                str(pictures / "c.png"),
                "-o",
                str(out),
                "--model",
                "tiny",
                "--steps",
                "1",
                "--seed",
                "5",
                "--variants",
                "2",
                "--batch-size",
                "3",
            ]
        )
        == 0
    )
    assert files(out) == ["a_v0.png", "a_v1.png", "c_v0.png", "c_v1.png"]
    options = tiny_load.options(steps=1, seed=5)
    images = [np.asarray(Image.open(pictures / n)) for n in ("a.png", "a.png", "c.png", "c.png")]
    seeds = [key_seed(5, f"{name}_v{k}.png", k) for name in "ac" for k in range(2)]  # the output's path
    want = tiny_load.degrade(images, options, seeds)
    for name, image in zip(("a_v0", "a_v1", "c_v0", "c_v1"), want):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{name}.png")), image)
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"degrade: wrote 4 image(s) to {out}"

    aligned = tmp_path / "aligned"
    assert (
        main(
            [
                "restore",
                str(pictures / "a.png"),
                "-o",
                str(aligned),
                "--model",
                "tiny",
                "--steps",
                "1",
                "--aligned",
                "--color-fix",
                "0",
            ]
        )
        == 0
    )
    from flipnet_rt.cli.faces import build_face_restorer

    args = build_parser().parse_args(["restore", "x", "-o", "o", "--aligned"])
    expected = build_face_restorer(args, tiny_load, tiny_load.options(steps=1, color_fix=0)).restore_crops(
        [images[0]], [key_seed(0, "a.png")], tiny_load.options(steps=1, color_fix=0)
    )[0]
    np.testing.assert_array_equal(np.asarray(Image.open(aligned / "a.png")), expected)


def test_bad_inputs_cost_one_line_each_and_the_rest_is_written(pictures, tmp_path, tiny_load, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "degrade",
            str(pictures),
            str(tmp_path / "ghost.png"),
            "-o",
            str(out),
            "--model",
            "tiny",
            "--steps",
            "1",
            "--batch-size",
            "2",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert files(out) == ["a.png", "c.png", "sub/b.png"]
    errors = lines(err, "error: ")
    assert len(errors) == 2 and any("ghost.png" in e for e in errors) and any("broken.png" in e for e in errors)
    assert err.strip().splitlines()[-1] == f"degrade: wrote 3 image(s) to {out}; 2 failed (see the errors above)"


def test_nothing_to_do_and_a_model_that_fails_to_load(tmp_path, monkeypatch, capsys):
    assert main(["restore", str(tmp_path / "ghost.png"), "-o", str(tmp_path / "o"), "--model", "m"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: no input images to process" and "ghost.png" in err[0] and err[0].startswith("error: ")

    from flipnet_rt.runtime.restorer import Restorer

    def load(model, **kwargs):
        raise FileNotFoundError(f"{model}: no such model")

    monkeypatch.setattr(Restorer, "load", load)
    Image.fromarray(face_like(32)).save(tmp_path / "x.png")
    assert main(["restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--model", "m"]) == 2
    assert capsys.readouterr().err == "error: --model m: m: no such model\n"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("error", [RuntimeError("out of memory"), ValueError("bad batch")])
def test_a_failed_batch_fails_its_images_and_the_next_batch_goes_on(
    pictures, tmp_path, monkeypatch, tiny_load, capsys, error
):
    calls = []
    original = type(tiny_load).degrade

    def degrade(restorer, images, options=None, seeds=None):
        calls.append(len(images))
        if len(calls) == 1:
            raise error
        return original(restorer, images, options, seeds)

    monkeypatch.setattr(type(tiny_load), "degrade", degrade)
    names = [str(pictures / n) for n in ("a.png", "c.png", "sub/b.png")]
    out = tmp_path / "out"
    assert main(["degrade", *names, "-o", str(out), "--model", "tiny", "--steps", "1", "--batch-size", "2"]) == 1
    assert calls == [2, 1]
    assert files(out) == ["c.png"]  # the jobs run in name order: a, b | c
    errors = lines(capsys.readouterr().err, "error: ")
    assert errors == [
        f"error: {pictures / 'a.png'}: inference failed ({error})",
        f"error: {pictures / 'sub' / 'b.png'}: inference failed ({error})",
    ]


def test_an_unwritable_output_is_reported_and_the_rest_is_written(pictures, tmp_path, monkeypatch, tiny_load, capsys):
    real_save = jobs.save_image

    def save(image, path):
        if Path(path).name == "a.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(image, path)

    monkeypatch.setattr(jobs, "save_image", save)
    out = tmp_path / "out"
    assert (
        main(
            [
                "degrade",
                str(pictures / "a.png"),
                str(pictures / "c.png"),
                "-o",
                str(out),
                "--model",
                "tiny",
                "--steps",
                "1",
            ]
        )
        == 1
    )
    assert files(out) == ["c.png"]
    err = capsys.readouterr().err
    assert lines(err, "error: ") == [
        f"error: {out / 'a.png'}: cannot write (No space left on device); check the folder's permissions and space"
    ]
    assert err.strip().splitlines()[-1] == f"degrade: wrote 1 image(s) to {out}; 1 failed (see the errors above)"


class FaceRecorder:
    """The face restorer of whole images, at its seam: image i gets i faces (the first one restored,
    any other skipped), the "restored" image is the input plus one grey level."""

    def __init__(self):
        self.calls = []

    def restore_images(self, images, seeds):
        self.calls.append(list(seeds))
        out = []
        for image in images:
            count = int(image[0, 0, 0]) % 3  # set by the test
            results = []
            for j in range(count):
                face = Face(
                    box=np.array([1.0, 2.0, 11.0, 12.0]),
                    score=0.9,
                    landmarks=np.arange(10, dtype=np.float64).reshape(5, 2),
                )
                crop = np.full((8, 8, 3), 10 * (j + 1), np.uint8)
                results.append(
                    FaceResult(
                        face,
                        j,
                        100 + j,
                        restored=j == 0 and count == 1,
                        crop_size=8,
                        aligned=crop,
                        output=crop + 1,
                        reason="" if j == 0 else "max_faces",
                    )
                )
            out.append((np.clip(image.astype(int) + 1, 0, 255).astype(np.uint8), results))
        return out


def test_whole_images_write_their_report_saved_faces_and_warnings(tmp_path, monkeypatch, tiny_load, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name, faces in (("none.png", 0), ("sub/one.png", 1), ("two.png", 2)):
        image = face_like(32, faces)
        image[0, 0, 0] = faces
        Image.fromarray(image).save(folder / name)
    (folder / "broken.png").write_text("not an image")
    recorder = FaceRecorder()
    import flipnet_rt.cli.faces as faces_cli

    built = []
    monkeypatch.setattr(
        faces_cli,
        "build_face_restorer",
        lambda args, restorer, options: built.append((args.detector, restorer, options)) or recorder,
    )
    out, saved, report = tmp_path / "out", tmp_path / "saved", tmp_path / "report.json"
    code = main(
        [
            "restore",
            str(folder),
            "-o",
            str(out),
            "--model",
            "tiny",
            "--steps",
            "1",
            "--seed",
            "3",
            "--batch-size",
            "4",
            "--save-faces",
            str(saved),
            "--report",
            str(report),
            "--detector",
            "dlib",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert built == [("dlib", tiny_load, tiny_load.options(steps=1, seed=3))]
    assert recorder.calls == [[key_seed(3, name) for name in ("none.png", "sub/one.png", "two.png")]]
    assert files(out) == ["none.png", "sub/one.png", "two.png"]
    source = np.asarray(Image.open(folder / "two.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "two.png")), np.clip(source.astype(int) + 1, 0, 255))
    assert files(saved) == ["cmp/sub__one_00.png", "cropped_faces/sub__one_00.png", "restored_faces/sub__one_00.png"]
    assert lines(err, "warning: ") == [
        f"warning: {folder / 'none.png'}: no face found; written unchanged",
        f"warning: {folder / 'two.png'}: no face selected (see --max-faces, --min-face-size); written unchanged",
    ]
    assert len(lines(err, "error: ")) == 1 and "broken.png" in lines(err, "error: ")[0]

    document = json.loads(report.read_text())
    assert document["meta"] == {
        "model": "tiny",
        "seed": 3,
        "detector": "dlib",
        "detect_size": None,
        "detect_angles": [0],
        "errors": [lines(err, "error: ")[0].removeprefix("error: ")],
    }
    entries = {Path(e["image"]).name: e for e in document["images"]}
    assert list(entries) == ["broken.png", "none.png", "one.png", "two.png"]
    assert entries["broken.png"]["error"] == lines(err, "error: ")[0].removeprefix("error: ")
    assert entries["broken.png"]["faces"] == [] and entries["broken.png"]["width"] is None
    one = entries["one.png"]
    assert (one["output"], one["seed"], one["width"], one["height"], one["restored"]) == (
        str(out / "sub" / "one.png"),
        key_seed(3, "sub/one.png"),
        32,
        32,
        1,
    )
    assert [f["restored"] for f in entries["two.png"]["faces"]] == [False, False]


def test_whole_images_without_a_report_or_saved_faces_write_only_the_images(tmp_path, monkeypatch, tiny_load):
    image = face_like(32, 0)
    image[0, 0, 0] = 1
    Image.fromarray(image).save(tmp_path / "x.png")
    import flipnet_rt.cli.faces as faces_cli

    monkeypatch.setattr(faces_cli, "build_face_restorer", lambda args, restorer, options: FaceRecorder())
    assert main(["restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "out"), "--model", "tiny"]) == 0
    assert files(tmp_path) == ["out/x.png", "x.png"]


@pytest.mark.parametrize(
    "error",
    [ValueError("no such detector"), FileNotFoundError("weights missing"), ImportError("install the eval extra")],
)
def test_a_face_restorer_that_cannot_be_built_is_a_usage_error(tmp_path, monkeypatch, tiny_load, capsys, error):
    import flipnet_rt.cli.faces as faces_cli

    def build(args, restorer, options):
        raise error

    monkeypatch.setattr(faces_cli, "build_face_restorer", build)
    Image.fromarray(face_like(32)).save(tmp_path / "x.png")
    assert main(["restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--model", "tiny"]) == 2
    assert capsys.readouterr().err == f"error: {error}\n"
    assert not (tmp_path / "o").exists()


def test_runner_kinds(tiny_restorer):
    """degrade runs the restorer's degrade; --aligned the crops path; whole images the face layer."""
    options = tiny_restorer.options(steps=1)
    degrade = jobs._runner(SimpleNamespace(command="degrade"), tiny_restorer, options)
    aligned = jobs._runner(build_parser().parse_args(["restore", "x", "-o", "o", "--aligned"]), tiny_restorer, options)
    whole = jobs._runner(build_parser().parse_args(["restore", "x", "-o", "o"]), tiny_restorer, options)
    assert isinstance(degrade, jobs._Crops) and isinstance(aligned, jobs._Crops)
    assert isinstance(whole, jobs._WholeImages)
    image = face_like(tiny_restorer.config.resolution, 4)
    np.testing.assert_array_equal(degrade([image], [8])[0], tiny_restorer.degrade([image], options, [8])[0])
    assert degrade.finish(None, image, 8, image) is image


def test_the_progress_bar_counts_images_on_stderr_and_hides_off_a_terminal(
    pictures, tmp_path, monkeypatch, tiny_load, capsys
):
    import sys

    import tqdm

    bars = []

    class Bar(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            bars.append(self)
            self.kwargs, self.counted = kwargs, []
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            self.counted.append(n)
            return super().update(n)

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    names = [str(pictures / n) for n in ("a.png", "c.png", "sub/b.png")]
    assert (
        main(["degrade", *names, "-o", str(tmp_path / "o"), "--model", "tiny", "--steps", "1", "--batch-size", "2"])
        == 0
    )
    (bar,) = bars
    assert bar.kwargs == dict(total=3, desc="degrade", unit="img", disable=None, file=sys.stderr)
    assert bar.counted == [2, 1]  # images per batch
    err = capsys.readouterr().err
    assert "img/s" not in err and "\r" not in err  # disable=None: no bar when stderr is not a terminal


def test_run_jobs_makes_one_output_per_image_by_default(pictures, tmp_path, tiny_load):
    args = build_parser().parse_args(
        ["degrade", str(pictures / "a.png"), "-o", str(tmp_path / "o"), "--model", "tiny", "--steps", "1"]
    )
    assert jobs.run_jobs(args) == 0
    assert files(tmp_path / "o") == ["a.png"]


def test_an_inference_failure_is_in_the_report(tmp_path, monkeypatch, tiny_load, capsys):
    import flipnet_rt.cli.faces as faces_cli

    class Failing:
        def restore_images(self, images, seeds):
            raise RuntimeError("out of memory")

    monkeypatch.setattr(faces_cli, "build_face_restorer", lambda args, restorer, options: Failing())
    Image.fromarray(face_like(32)).save(tmp_path / "x.png")
    report = tmp_path / "r.json"
    assert (
        main(
            ["restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--model", "tiny", "--report", str(report)]
        )
        == 1
    )
    (entry,) = json.loads(report.read_text())["images"]
    assert (entry["image"], entry["error"], entry["faces"]) == (str(tmp_path / "x.png"), "out of memory", [])
    assert lines(capsys.readouterr().err, "error: ") == [
        f"error: {tmp_path / 'x.png'}: inference failed (out of memory)"
    ]
