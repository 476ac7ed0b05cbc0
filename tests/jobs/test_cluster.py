"""``flipnet-rt cluster`` on a local Ray instance (2 CPUs): the bytes of the single-machine
commands, exactly once, resumable after a killed driver or a killed actor, failures recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import face_like
from PIL import Image

from flipnet_rt.cli.main import main

ENGINE = Path(__file__).resolve().parents[2] / "models" / "demo-onnx"
pytestmark = pytest.mark.slow
FAST = ["--model", str(ENGINE), "--backend", "onnxruntime", "--device", "cpu"]


def files(root: Path) -> list[str]:
    """Every file under ``root`` (hidden ones included), relative, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def outputs(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in files(root) if not name.startswith("_")}


def summary(root: Path) -> dict:
    return json.loads((root / "_summary.json").read_text())


def crops(folder: Path, count: int, start: int = 0) -> Path:
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        Image.fromarray(face_like(64, i)).save(folder / ("sub" if i % 3 == 0 else ".") / f"face{i:02d}.png")
    return folder


def cluster(*args: str) -> list[str]:
    return ["cluster", *args]


def test_cluster_restore_writes_the_bytes_of_restore_and_a_second_run_skips_everything(ray_address, tmp_path, capsys):
    """Aligned crops and whole pictures (faces detected and pasted back), 2 actors, batches of 2."""
    from video.clips import static_face_frames

    folder = crops(tmp_path / "in", 5)
    pictures, _ = static_face_frames(2, size=(160, 96), eye_distance=15.0)
    (folder / "whole").mkdir()
    for i, picture in enumerate(pictures):
        Image.fromarray(picture).save(folder / "whole" / f"picture{i}.png")
    for kind in ("aligned", "whole"):
        extra = ["--aligned"] if kind == "aligned" else []
        inputs = [str(folder / "sub"), *(str(p) for p in sorted(folder.glob("*.png")))]
        inputs = inputs if kind == "aligned" else [str(folder / "whole")]
        reference, out = tmp_path / f"restore-{kind}", tmp_path / f"cluster-{kind}"
        assert main(["restore", *inputs, "-o", str(reference), *FAST, "--seed", "7", *extra]) == 0
        args = [*inputs, "-o", str(out), *FAST, "--seed", "7", "--actors", "2", "--batch-size", "2", *extra]
        assert main(cluster("restore", *args)) == 0, capsys.readouterr().err
        assert outputs(out) == outputs(reference) and len(outputs(out)) == (5 if kind == "aligned" else 2)
        first = summary(out)
        assert (first["complete"], first["written"], first["skipped"], first["failed"]) == (
            True,
            first["planned"],
            0,
            0,
        )
        assert (out / "_errors.jsonl").read_text() == ""
        before = {name: (out / name).stat().st_mtime_ns for name in outputs(out)}
        assert main(cluster("restore", *args)) == 0
        second = summary(out)
        assert (second["written"], second["skipped"], second["complete"]) == (0, first["planned"], True)
        assert {name: (out / name).stat().st_mtime_ns for name in outputs(out)} == before, "nothing rewritten"
        assert "skipped 0" not in capsys.readouterr().err.splitlines()[-1]
    # whole pictures: faces were found and restored (the outputs differ from the inputs)
    restored = np.asarray(Image.open(tmp_path / "cluster-whole" / "picture0.png"))
    assert np.abs(restored.astype(int) - pictures[0]).max() > 10


def test_a_killed_driver_resumes_and_writes_every_output_exactly_once(ray_address, tmp_path):
    folder = crops(tmp_path / "in", 12)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "flipnet_rt.cli.main", *cluster("restore", str(folder), "-o", str(out))]
    command += [*FAST, "--aligned", "--address", ray_address, "--actors", "1", "--steps", "4"]
    driver = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        if len([n for n in files(out) if n.endswith(".png") and not n.startswith((".", "sub/."))]) >= 2:
            break
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    written = [n for n in outputs(out) if "/." not in n and not n.startswith(".")]
    assert 2 <= len(written) < 12, f"killed after {len(written)} outputs: {driver.stderr.read().decode()[-2000:]}"
    (out / ".face01.png.0123abcd.tmp").write_bytes(b"half an image")  # what a kill mid-write leaves
    assert not (out / "_summary.json").exists()

    assert (
        main(cluster("restore", str(folder), "-o", str(out), *FAST, "--aligned", "--actors", "2", "--steps", "4")) == 0
    )
    done = summary(out)
    assert (done["complete"], done["written"] + done["skipped"], done["skipped"] >= len(written)) == (True, 12, True)
    assert files(out) == sorted(
        ["_errors.jsonl", "_summary.json"] + [f"{'sub/' if i % 3 == 0 else ''}face{i:02d}.png" for i in range(12)]
    ), "each output once, no temporary file left"
    reference = tmp_path / "reference"
    assert main(["restore", str(folder), "-o", str(reference), *FAST, "--aligned", "--steps", "4"]) == 0
    assert outputs(out) == outputs(reference)


def _actor_pids() -> set[int]:
    """The pids of the Ray Data actors running now (their process title is ray::MapWorker...)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::MapWorker"):
                pids.add(int(entry.name))
    return pids


def test_an_actor_killed_mid_job_is_replaced_and_the_job_completes_exactly_once(ray_address, tmp_path, retries="2"):
    folder = crops(tmp_path / "in", 20)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "flipnet_rt.cli.main", *cluster("degrade", str(folder), "-o", str(out))]
    command += [*FAST, "--address", ray_address, "--actors", "2", "--steps", "6", "--retries", retries]
    before = _actor_pids()
    driver = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    victim, first = None, set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        first = _actor_pids() - before
        if len(first) >= 2 and len([n for n in files(out) if n.endswith(".png")]) >= 2:  # both actors at work
            victim = min(first)
            os.kill(victim, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert victim is not None, driver.stderr.read().decode()[-2000:] if driver.poll() is not None else "no actor"
    assert len(outputs(out)) < 20, "killed after the job's end"
    _, err = driver.communicate(timeout=240)
    assert driver.returncode == 0, err.decode()[-3000:]
    done = summary(out)
    assert (done["complete"], done["written"] + done["skipped"], done["failed"]) == (True, 20, 0)
    assert not Path(f"/proc/{victim}").exists()
    # the victim's replacement (a process started after the kill) re-ran its unfinished calls. (Whether
    # the victim is listed too depends on whether one of its calls had come back before the kill.)
    writers = {int(name.rsplit(":", 1)[1]) for name in done["actors"]}
    print(f"actors at the kill {sorted(first)} (victim {victim}); actors whose outputs came back {sorted(writers)}")
    assert writers - first, (done["actors"], first)
    assert files(out) == sorted(
        ["_errors.jsonl", "_summary.json"] + [f"{'sub/' if i % 3 == 0 else ''}face{i:02d}.png" for i in range(20)]
    )
    reference = tmp_path / "reference"
    assert main(["degrade", str(folder), "-o", str(reference), *FAST, "--steps", "6"]) == 0
    assert outputs(out) == outputs(reference)


def test_a_corrupt_input_is_recorded_the_rest_written_and_the_exit_status_is_1(ray_address, tmp_path, capsys):
    folder = crops(tmp_path / "in", 3)
    good = (folder / "face01.png").read_bytes()
    (folder / "broken.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "out"
    args = cluster("degrade", str(folder), "-o", str(out), *FAST, "--actors", "2", "--batch-size", "2")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert sorted(outputs(out)) == ["face01.png", "face02.png", "sub/face00.png"]
    (record,) = [json.loads(line) for line in (out / "_errors.jsonl").read_text().splitlines()]
    assert record["path"] == str(folder / "broken.png") and "truncated" in record["reason"]
    assert f"error: {folder / 'broken.png'}: " in err and "failed 1 of 4" in err.splitlines()[-1]
    done = summary(out)
    assert (done["complete"], done["written"], done["failed"], done["failures"]) == (False, 3, 1, [record])
    assert main(args) == 1  # a rerun retries only the failed input
    assert (summary(out)["skipped"], summary(out)["written"], summary(out)["failed"]) == (3, 0, 1)


def test_cluster_degrade_variants_and_gpus_declared_per_actor(ray_address, tmp_path, capsys):
    """--variants 3: three outputs per input, each its own stream, the bytes of ``degrade``; the
    actors declare a GPU each (Ray's num_gpus; this machine's are declared, not real)."""
    folder = crops(tmp_path / "in", 2, start=1)
    out, reference = tmp_path / "out", tmp_path / "reference"
    extra = ["--variants", "3", "--seed", "3"]
    assert main(["degrade", str(folder), "-o", str(reference), *FAST, *extra]) == 0
    args = [str(folder), "-o", str(out), *FAST, *extra, "--actors", "2", "--gpus-per-actor", "1"]
    assert main(cluster("degrade", *args, "--cpus-per-actor", "0.5")) == 0
    names = [f"face{i:02d}_v{k}.png" for i in (1, 2) for k in range(3)]
    assert sorted(outputs(out)) == sorted(names) and outputs(out) == outputs(reference)
    assert len(set(outputs(out).values())) == 6
    assert main(cluster("degrade", *args[:-1], "3", "--overwrite")) == 2  # 2 GPUs declared: not one actor's 3
    assert "--gpus-per-actor: 3; the cluster has 2 GPUs in all" in capsys.readouterr().err


def test_cluster_video_writes_the_frames_of_video(ray_address, tmp_path):
    import av
    from video.clips import cfr_pts, static_face_frames, write_clip

    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(2):
        frames, _ = static_face_frames(5, eye_distance=15.0, size=(160, 96), seed=i)
        write_clip(folder / f"clip{i}.mp4", cfr_pts(5), size=(160, 96), frame=lambda k, f=frames: f[k])
    (folder / "notes.txt").write_text("not a video: folders give their videos only")
    out, single = tmp_path / "out", tmp_path / "single"
    single.mkdir()
    extra = ["--preset", "ultrafast", "--seed", "4"]
    for i in range(2):
        assert main(["video", str(folder / f"clip{i}.mp4"), "-o", str(single / f"clip{i}.mp4"), *FAST, *extra]) == 0
    assert main(cluster("video", str(folder), "-o", str(out), *FAST, *extra, "--actors", "2")) == 0
    assert files(out) == ["_errors.jsonl", "_summary.json", "clip0.mp4", "clip1.mp4"]

    def decoded(path: Path) -> list[np.ndarray]:
        with av.open(str(path)) as container:
            return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]

    for i in range(2):
        mine, theirs = decoded(out / f"clip{i}.mp4"), decoded(single / f"clip{i}.mp4")
        assert len(mine) == len(theirs) == 5
        assert all(np.array_equal(a, b) for a, b in zip(mine, theirs)), f"clip{i}: frames differ"
    assert not np.array_equal(decoded(out / "clip0.mp4")[0], decoded(folder / "clip0.mp4")[0])  # restored


def test_list_files_and_file_urls_go_through_fsspec_to_the_same_bytes(ray_address, tmp_path):
    folder = crops(tmp_path / "in", 3)
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"# one per line\n{(folder / 'sub').as_uri()}\n\n{(folder / 'face01.png').as_uri()}\n")
    out = tmp_path / "out"
    assert main(cluster("degrade", str(listing), "-o", out.as_uri(), *FAST, "--actors", "1")) == 0
    reference = tmp_path / "reference"
    assert main(["degrade", str(folder / "sub"), str(folder / "face01.png"), "-o", str(reference), *FAST]) == 0
    assert outputs(out) == outputs(reference) and sorted(outputs(out)) == ["face00.png", "face01.png"]
    assert summary(out)["written"] == 2


def test_usage_errors_are_exit_2_and_name_the_flag(tmp_path, capsys):
    for extra, message in (
        (["--actors", "0"], "--actors: 0; must be 1 or more"),
        (["--retries", "-1"], "--retries: -1"),
        (["--address", "nowhere"], "--address: 'nowhere'"),
        (["--steps", "0"], "--steps: 0; use 1 or more"),  # checked against the model before Ray starts
    ):
        assert main(cluster("restore", str(tmp_path), "-o", str(tmp_path / "o"), *FAST, *extra)) == 2
        assert message in capsys.readouterr().err
