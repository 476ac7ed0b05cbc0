"""Planning, atomic writes and records of exactly-once jobs (no Ray)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import face_like
from PIL import Image

from flipnet_rt.imaging.io import _create_temp
from flipnet_rt.jobs.exactly_once import (
    TEMP_NAME,
    Store,
    Summary,
    WorkItem,
    plan_work,
    read_image,
    write_records,
)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.jpg", "c.png", ".hidden.png"):
        Image.fromarray(face_like(16, len(name))).save(tmp_path / "in" / name)
    (tmp_path / "in" / "notes.md").write_text("not taken from folders")
    return tmp_path / "in"


def test_the_temporary_names_of_every_writer_are_recognised(tmp_path):
    from flipnet_rt.video.sink import partial_path

    tmp, fd = _create_temp(tmp_path / "a.png")
    os.close(fd)
    for name in (tmp.name, partial_path(tmp_path / "clip.mp4").name, ".x.png.0123abcd.tmp"):
        assert TEMP_NAME.match(name), name
    for name in ("a.png", ".hidden.png", "a.0123abcd.tmp", ".a.png.tmp", "_summary.json"):
        assert not TEMP_NAME.match(name), name


def test_plan_skips_what_exists_removes_leftovers_and_redoes_all_with_overwrite(folder, tmp_path):
    out = tmp_path / "out"
    plan = plan_work([str(folder)], str(out), variants=2)
    keys = ["a_v0.png", "a_v1.png", "c_v0.png", "c_v1.png", "sub/b_v0.png", "sub/b_v1.png"]
    assert [i.key for i in plan.todo] == keys and [i.variant for i in plan.todo] == [0, 1] * 3
    assert plan.todo[-1] == WorkItem(str(folder / "sub" / "b.jpg"), str(out / "sub" / "b_v1.png"), "sub/b_v1.png", 1)
    assert (plan.skipped, plan.errors, plan.removed_temps) == ([], [], 0)

    (out / "sub").mkdir(parents=True)
    (out / "a_v1.png").write_bytes(b"done")
    (out / "sub" / ".b_v0.png.89abcdef.tmp").write_bytes(b"half")
    (out / ".c_v0.partial-0123abcd.png").write_bytes(b"half")
    again = plan_work([str(folder)], str(out), variants=2)
    assert [i.key for i in again.skipped] == ["a_v1.png"] and [i.key for i in again.todo] == keys[:1] + keys[2:]
    assert again.removed_temps == 2 and sorted(p.name for p in out.rglob("*") if p.is_file()) == ["a_v1.png"]
    assert [i.key for i in plan_work([str(folder)], str(out), variants=2, overwrite=True).todo] == keys


def test_list_files_urls_and_paths_give_the_same_keys(folder, tmp_path):
    out = tmp_path / "out"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{folder / 'sub'}\n# a comment\n\n{(folder / 'a.png').as_uri()}\n{tmp_path / 'ghost.png'}\n")
    plan = plan_work([str(listing)], out.as_uri())
    assert [(i.key, i.source, i.output) for i in plan.todo] == [
        ("a.png", (folder / "a.png").as_uri(), out.as_uri() + "/a.png"),
        ("b.png", str(folder / "sub" / "b.jpg"), out.as_uri() + "/b.png"),
    ]
    assert [path for path, _ in plan.errors] == [str(tmp_path / "ghost.png")]
    whole = plan_work([folder.as_uri()], str(out))
    assert [i.key for i in whole.todo] == [i.key for i in plan_work([str(folder)], str(out)).todo]
    clash = plan_work([str(folder / "a.png"), (folder / "a.png").as_uri()], str(out))
    assert len(clash.todo) == 1 and "also the output of" in clash.errors[0][1]


@pytest.mark.parametrize("url", [False, True])
def test_store_writes_atomically_and_records_land_beside_the_outputs(folder, tmp_path, url):
    out = tmp_path / "out"
    store = Store(out.as_uri() if url else str(out))
    image = face_like(16, 3)
    store.write_image("deep/x.png", image)
    assert store.exists("deep/x.png") and not store.exists("x.png")
    assert np.array_equal(np.asarray(Image.open(out / "deep" / "x.png")), image)
    summary = Summary(planned=3, written=1, skipped=1, failed=[("in/bad.png", "corrupt")], seconds=2.0)
    write_records(store, summary)
    assert json.loads((out / "_errors.jsonl").read_text()) == {"path": "in/bad.png", "reason": "corrupt"}
    record = json.loads((out / "_summary.json").read_text())
    assert (record["complete"], record["failed"], record["per_second"]) == (False, 1, 0.5)
    assert sorted(p.name for p in out.rglob("*")) == ["_errors.jsonl", "_summary.json", "deep", "x.png"]


def test_read_image_names_the_url_of_a_bad_input(tmp_path):
    from flipnet_rt.imaging.io import ImageError

    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(ImageError) as caught:
        read_image(bad.as_uri())
    assert str(caught.value).startswith(bad.as_uri() + ": not an image file")
    with pytest.raises(ImageError, match="ghost.png: cannot read"):
        read_image((tmp_path / "ghost.png").as_uri())
