"""flipnet_rt.jobs.batchio at its edges: exact one-line errors, what is logged, walking on after the
skipped output folder, and batch sizes (issue 19: each test kills mutants the other tests left)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from flipnet_rt.jobs.batchio import batched, plan_jobs


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"img")
    return path


def test_input_errors_are_exact_and_planning_goes_on(tmp_path: Path) -> None:
    good = _touch(tmp_path / "good.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    jobs, errors = plan_jobs(["", tmp_path / "missing.png", tmp_path / "dangling.png", good], tmp_path / "out")
    assert [job.source for job in jobs] == [good]
    assert errors == [
        "'': empty input path; pass a file or folder",
        f"{tmp_path / 'missing.png'}: input not found; check the path",
        f"{tmp_path / 'dangling.png'}: input broken link; check the path",
    ]


def test_unknown_suffix_and_batch_size_messages(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        plan_jobs([], tmp_path, suffix="gif")
    assert (
        str(info.value)
        == "plan_jobs: cannot write 'gif' images; use one of .png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff"
    )
    with pytest.raises(ValueError) as info:
        list(batched([], 0))
    assert str(info.value) == "batched: batch_size must be >= 1, got 0"
    assert list(batched([1, 2, 3], 1)) == [[1], [2], [3]]


def test_unlistable_folder_error_gives_the_os_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "in"
    locked = root / "locked"
    _touch(locked / "b.png")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    _, errors = plan_jobs([root], tmp_path / "out")
    assert errors == [f"{locked}: cannot list folder (Permission denied); its images are skipped"]


def test_folders_after_the_output_folder_are_still_walked(tmp_path: Path, caplog) -> None:
    root = tmp_path / "in"
    _touch(root / "a_out" / "old.png")  # the output folder, sorted before "b"
    _touch(root / "b" / "x.png")
    _touch(root / "c.png")
    with caplog.at_level(logging.DEBUG, logger="flipnet_rt.jobs.batchio"):
        jobs, errors = plan_jobs([root, root / "c.png"], root / "a_out")
    assert errors == []
    assert [job.source.relative_to(root).as_posix() for job in jobs] == ["b/x.png", "c.png"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{root / 'a_out'}: output folder inside an input folder, not walked",
        f"{root / 'c.png'}: same file as {root / 'c.png'}, restored once",
        "planned 2 jobs, 0 errors",
    ]
