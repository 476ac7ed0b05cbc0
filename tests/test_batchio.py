"""Tests for flipnet_rt.jobs.batchio: planning batch jobs from files and folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flipnet_rt.jobs.batchio import IMAGE_SUFFIXES, BatchReport, Job, batched, is_image_path, plan_jobs


def _touch(path: Path, data: bytes = b"img") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _check_errors(errors: list[str], *names: str) -> None:
    """Every error is one line; together they mention every name in ``names``."""
    for error in errors:
        assert "\n" not in error and "\r" not in error, error
    for name in names:
        assert any(name in error for error in errors), (name, errors)


def _outputs(jobs: list[Job], outdir: Path) -> list[str]:
    return [job.output.relative_to(outdir).as_posix() for job in jobs]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """in/ with images at several depths plus things that must be skipped."""
    root = tmp_path / "in"
    _touch(root / "b.png")
    _touch(root / "a.JPG")
    _touch(root / "sub" / "c.webp")
    _touch(root / "sub" / "deep" / "d.TIFF")
    _touch(root / "notes.txt")  # not an image suffix
    _touch(root / ".hidden.png")  # hidden file
    _touch(root / ".cache" / "e.png")  # hidden folder
    _touch(tmp_path / "elsewhere" / "f.png")
    (root / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    return root


def test_image_suffixes() -> None:
    assert IMAGE_SUFFIXES == {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
    assert is_image_path("x/Y.JPeG") and is_image_path(Path("a.tif"))
    assert not is_image_path("a.txt") and not is_image_path("png")


def test_folder_is_mirrored(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    jobs, errors = plan_jobs([tree], out)
    assert errors == []
    assert _outputs(jobs, out) == ["a.png", "b.png", "sub/c.png", "sub/deep/d.png"]
    assert [job.index for job in jobs] == [0, 1, 2, 3]
    assert jobs[0].source == tree / "a.JPG"
    assert jobs[3].source == tree / "sub" / "deep" / "d.TIFF"


def test_output_suffix(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    jobs, errors = plan_jobs([tree], out, suffix="jpg")
    assert errors == []
    assert _outputs(jobs, out) == ["a.jpg", "b.jpg", "sub/c.jpg", "sub/deep/d.jpg"]


def test_bad_arguments_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gif"):
        plan_jobs([], tmp_path, suffix=".gif")
    with pytest.raises(ValueError, match="variants"):
        plan_jobs([], tmp_path, variants=0)


def test_file_argument_taken_whatever_its_suffix(tmp_path: Path) -> None:
    notes = _touch(tmp_path / "src" / "notes.txt", b"not an image")
    bare = _touch(tmp_path / "src" / "README")
    out = tmp_path / "out"
    jobs, errors = plan_jobs([notes, str(bare)], out)
    assert errors == []
    assert _outputs(jobs, out) == ["README.png", "notes.png"]


def test_missing_inputs_reported_others_planned(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    good = _touch(tmp_path / "solo.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    jobs, errors = plan_jobs([tmp_path / "nope.png", tree, tmp_path / "nodir", good, tmp_path / "dangling.png"], out)
    assert len(errors) == 3
    _check_errors(errors, "nope.png", "nodir", "dangling.png")
    assert _outputs(jobs, out) == ["a.png", "b.png", "solo.png", "sub/c.png", "sub/deep/d.png"]


def test_collision_names_both_sources(tmp_path: Path) -> None:
    root = tmp_path / "in"
    first = _touch(root / "face.jpg")
    second = _touch(root / "face.png")
    out = tmp_path / "out"
    jobs, errors = plan_jobs([root], out)
    assert [job.source for job in jobs] == [first]  # sorted walk: face.jpg claims it first
    assert len(errors) == 1
    _check_errors(errors, "face.jpg", "face.png", "out")
    assert errors[0].startswith(str(second))


def test_collision_between_arguments(tmp_path: Path) -> None:
    a = _touch(tmp_path / "x" / "img.png")
    b = _touch(tmp_path / "y" / "img.png")
    out = tmp_path / "out"
    jobs, errors = plan_jobs([a, b], out)
    assert [job.source for job in jobs] == [a]
    assert len(errors) == 1 and errors[0].startswith(str(b)) and str(a) in errors[0]


def test_outdir_equal_to_input_folder_same_suffix_refused(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _touch(root / "a.png")
    _touch(root / "sub" / "b.png")
    jobs, errors = plan_jobs([root], root)
    assert jobs == []
    assert len(errors) == 2
    _check_errors(errors, "a.png", "b.png")
    assert all("never overwritten" in error for error in errors)
    assert (root / "a.png").read_bytes() == b"img"


def test_outdir_equal_to_input_folder_other_suffix_allowed(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _touch(root / "a.jpg")
    jobs, errors = plan_jobs([root], root, suffix=".png")
    assert errors == []
    assert [job.output for job in jobs] == [root / "a.png"]


def test_output_onto_another_input_refused(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _touch(root / "a.jpg")
    _touch(root / "a.png")
    jobs, errors = plan_jobs([root], root, suffix=".png")
    assert jobs == []
    assert len(errors) == 2
    _check_errors(errors, "a.jpg", "a.png")
    assert all("never overwritten" in error for error in errors)


def test_output_through_symlinked_outdir_refused(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _touch(root / "a.png")
    link = tmp_path / "outlink"
    link.symlink_to(root, target_is_directory=True)
    jobs, errors = plan_jobs([root], link)
    assert jobs == []
    _check_errors(errors, "a.png")
    assert "never overwritten" in errors[0]


def test_output_hardlinked_to_input_refused(tmp_path: Path) -> None:
    source = _touch(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    os.link(source, out / "a.png")  # resolve() differs, os.path.samefile does not
    jobs, errors = plan_jobs([source], out)
    assert jobs == []
    _check_errors(errors, "a.png", str(out / "a.png"))


def test_existing_previous_output_is_overwritten(tmp_path: Path) -> None:
    source = _touch(tmp_path / "in" / "a.png")
    _touch(tmp_path / "out" / "a.png", b"old result")
    jobs, errors = plan_jobs([source], tmp_path / "out")
    assert errors == [] and [job.output for job in jobs] == [tmp_path / "out" / "a.png"]


def test_outdir_inside_input_folder_is_not_walked(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _touch(root / "a.png")
    _touch(root / "restored" / "a.png", b"previous output")
    _touch(root / "restored" / "z.png", b"previous output")
    out = root / "restored"
    jobs, errors = plan_jobs([root], out)
    assert errors == []
    assert [(job.source, job.output) for job in jobs] == [(root / "a.png", out / "a.png")]


def test_outdir_inside_input_folder_given_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _touch(tmp_path / "in" / "a.png")
    _touch(tmp_path / "in" / "res" / "old.png")
    jobs, errors = plan_jobs(["in"], Path("in/../in/res"))
    assert errors == []
    assert [job.source.name for job in jobs] == ["a.png"]


def test_outdir_not_yet_existing_inside_input(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _touch(root / "a.png")
    jobs, errors = plan_jobs([root], root / "new" / "out")
    assert errors == [] and [job.output for job in jobs] == [root / "new" / "out" / "a.png"]


def test_outdir_is_a_file(tmp_path: Path) -> None:
    source = _touch(tmp_path / "a.png")
    not_a_folder = _touch(tmp_path / "results.png")
    jobs, errors = plan_jobs([source], not_a_folder)
    assert jobs == []
    _check_errors(errors, "results.png")


def test_output_is_existing_folder(tmp_path: Path) -> None:
    source = _touch(tmp_path / "in" / "a.jpg")
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    jobs, errors = plan_jobs([source], tmp_path / "out")
    assert jobs == []
    _check_errors(errors, "a.jpg", "a.png")


def test_variants_naming(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _touch(root / "a.png")
    _touch(root / "sub" / "b.jpg")
    out = tmp_path / "out"
    jobs, errors = plan_jobs([root], out, variants=3)
    assert errors == []
    assert _outputs(jobs, out) == [
        "a_v0.png",
        "a_v1.png",
        "a_v2.png",
        "sub/b_v0.png",
        "sub/b_v1.png",
        "sub/b_v2.png",
    ]
    assert [job.index for job in jobs] == list(range(6))
    assert {job.source for job in jobs[:3]} == {root / "a.png"}


def test_variants_ordered_numerically(tmp_path: Path) -> None:
    source = _touch(tmp_path / "a.png")
    jobs, _ = plan_jobs([source], tmp_path / "out", variants=12)
    assert [job.output.name for job in jobs] == [f"a_v{k}.png" for k in range(12)]


def test_each_job_carries_the_key_and_variant_its_seed_derives_from(tmp_path: Path) -> None:
    """restore, degrade and cluster seed each output by (seed, key, variant) (issue 30): the key is the
    output's path under OUTDIR (POSIX separators), the variant its ``_v{k}``, whatever else the job holds."""
    root = tmp_path / "in"
    _touch(root / "a.png")
    _touch(root / "sub" / "b.jpg")
    out = tmp_path / "out"
    jobs, errors = plan_jobs([root], out, variants=2)
    assert errors == []
    assert [(job.key, job.variant) for job in jobs] == [
        ("a_v0.png", 0),
        ("a_v1.png", 1),
        ("sub/b_v0.png", 0),
        ("sub/b_v1.png", 1),
    ]
    assert all(job.output == out / job.key for job in jobs)
    _touch(tmp_path / "other" / "0.png")  # another folder first: indices move, keys and variants do not
    more, _ = plan_jobs([tmp_path / "other", root], out, variants=2)
    assert [job.index for job in more if job.source != tmp_path / "other" / "0.png"] == [2, 3, 4, 5]
    assert {(j.source, j.key, j.variant) for j in jobs} < {(j.source, j.key, j.variant) for j in more}
    single, _ = plan_jobs([root / "sub" / "b.jpg"], out)
    assert [(job.key, job.variant) for job in single] == [("b.png", 0)]


def test_videos_keep_their_own_suffix_and_folders_give_the_taken_suffixes(tmp_path: Path) -> None:
    """The cluster's video jobs plan with suffix=None (each output keeps its source's suffix) and
    take=its video suffixes (a folder gives those files, not its images)."""
    root = tmp_path / "clips"
    _touch(root / "a.mp4")
    _touch(root / "sub" / "b.MKV")
    _touch(root / "still.png")
    _touch(root / "notes.txt")
    out = tmp_path / "out"
    jobs, errors = plan_jobs([root], out, suffix=None, take=frozenset({".mp4", ".mkv"}))
    assert errors == []
    assert _outputs(jobs, out) == ["a.mp4", "sub/b.MKV"]
    assert [job.key for job in jobs] == ["a.mp4", "sub/b.MKV"]
    jobs, errors = plan_jobs([root / "a.mp4", root / "notes.txt"], out, suffix=None, variants=2)
    assert errors == []
    assert _outputs(jobs, out) == ["a_v0.mp4", "a_v1.mp4", "notes_v0.txt", "notes_v1.txt"]


def test_variants_collision_refuses_the_whole_source(tmp_path: Path) -> None:
    first = _touch(tmp_path / "in" / "a.jpg")
    _touch(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    jobs, errors = plan_jobs([tmp_path / "in"], out, variants=2)
    assert [job.source for job in jobs] == [first, first]
    assert _outputs(jobs, out) == ["a_v0.png", "a_v1.png"]
    assert len(errors) == 1
    _check_errors(errors, "a.png", "a.jpg", "a_v0.png")


def test_duplicates_processed_once(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    link = tmp_path / "alias.png"
    link.symlink_to(tree / "b.png")
    jobs, errors = plan_jobs([tree, tree / "b.png", tree, str(tree / "sub" / "c.webp"), link], out)
    assert errors == []
    assert _outputs(jobs, out) == ["a.png", "b.png", "sub/c.png", "sub/deep/d.png"]
    assert len({job.source.resolve() for job in jobs}) == len(jobs)


def test_direct_file_first_keeps_its_mapping(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    jobs, errors = plan_jobs([tree / "sub" / "c.webp", tree], out)
    assert errors == []
    assert _outputs(jobs, out) == ["a.png", "b.png", "c.png", "sub/deep/d.png"]


def test_plan_is_deterministic(tmp_path: Path) -> None:
    out = tmp_path / "out"
    roots = [tmp_path / "one", tmp_path / "two"]
    for name in ["z.png", "m.png", "a.png", "k/q.png", "k/b.png"]:  # created out of order
        _touch(roots[0] / name)
    _touch(roots[1] / "t" / "x.png")
    runs = [plan_jobs(order, out) for order in (roots, roots[::-1], roots)]
    assert runs[0] == runs[1] == runs[2]
    jobs, errors = runs[0]
    assert errors == []
    assert _outputs(jobs, out) == ["a.png", "k/b.png", "k/q.png", "m.png", "t/x.png", "z.png"]


def test_unlistable_subfolder_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "in"
    _touch(root / "a.png")
    locked = root / "locked"
    _touch(locked / "b.png")
    real_scandir = os.scandir

    def scandir(path: str) -> object:  # what os.walk sees for a folder it may not list
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    jobs, errors = plan_jobs([root], tmp_path / "out")
    assert [job.source.name for job in jobs] == ["a.png"]
    assert len(errors) == 1
    _check_errors(errors, "locked", "Permission denied")


def test_odd_names_give_one_line_errors(tmp_path: Path) -> None:
    jobs, errors = plan_jobs([tmp_path / "bad\nname.png", ""], tmp_path / "out")
    assert jobs == [] and len(errors) == 2
    _check_errors(errors, "bad\\nname.png")


def test_job_is_frozen(tmp_path: Path) -> None:
    job = Job(source=tmp_path / "a.png", output=tmp_path / "b.png", index=0)
    with pytest.raises(AttributeError):
        job.index = 1  # type: ignore[misc]


def test_batched() -> None:
    jobs = [Job(Path(f"{i}.png"), Path(f"o{i}.png"), i) for i in range(7)]
    assert [[job.index for job in batch] for batch in batched(jobs, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [len(batch) for batch in batched(iter(jobs), 7)] == [7]
    assert list(batched([], 4)) == []
    with pytest.raises(ValueError, match="batch_size"):
        list(batched(jobs, 0))


def test_batch_report() -> None:
    report = BatchReport()
    assert report.exit_code == 0 and report.summary() == "wrote 0 images, 0 errors"
    report.written.append(Path("a.png"))
    assert report.exit_code == 0 and report.summary() == "wrote 1 image, 0 errors"
    report.errors.append("b.png: not an image")
    assert report.exit_code == 1 and report.summary() == "wrote 1 image, 1 error"
