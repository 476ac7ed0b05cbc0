"""``flipnet-rt video``: exit statuses, one-line errors, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from video.clips import cfr_pts, frame_times, require, static_face_frames, stream_packets, write_clip

from flipnet_rt.cli.main import main

ENGINE = Path(__file__).resolve().parents[2] / "models" / "demo-onnx"


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.slow
def test_restores_a_clip(tmp_path, capsys):
    require((ENGINE / "manifest.json").is_file(), f"{ENGINE} (the shipped demo engine)")
    frames, _ = static_face_frames(6, eye_distance=15.0, size=(160, 96))
    src = write_clip(tmp_path / "in.mp4", cfr_pts(6), size=(160, 96), frame=lambda i: frames[i])
    out = tmp_path / "out.mkv"
    code = main(
        [
            "video",
            str(src),
            "-o",
            str(out),
            "--model",
            str(ENGINE),
            "--backend",
            "onnxruntime",
            "--device",
            "cpu",
            "--batch-size",
            "4",
            "--preset",
            "ultrafast",
            "--detect-thread",
        ]
    )
    err = capsys.readouterr().err
    print(err)
    assert code == 0 and "1 face tracks" in err
    assert frame_times(out) == frame_times(src) and stream_packets(out) == stream_packets(src)
    assert files(tmp_path) == ["in.mp4", "out.mkv"]


def test_not_a_video_is_exit_1_with_one_line(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    code = main(["video", str(bad), "-o", str(tmp_path / "out.mp4"), "--model", str(ENGINE)])
    err = capsys.readouterr().err.strip().splitlines()
    print(err)
    assert code == 1 and len(err) == 1 and err[0].startswith("error: ") and "notes.mp4" in err[0]
    assert files(tmp_path) == ["notes.mp4"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--codec", "nope"], "no such encoder"),
        (["--crf", "99"], "--crf"),
        (["--detect-every", "20", "--tracking", "interpolate"], "error: --lookahead: 10; must be at least"),
        (["--batch-size", "0"], "error: --batch-size: 0; must be 1 or more"),
        (["--smoothing", "-1"], "error: --smoothing: -1.0; must be 0"),
        (["--duration", "0"], "--duration"),
        (["--workers", "-1"], "--workers -1"),
        (["--fidelity", "2"], "fidelity: '2' is outside [0, 1]"),
    ],
)
def test_usage_errors_are_exit_2(clips, tmp_path, capsys, extra, message):
    code = main(["video", str(clips["cfr"]), "-o", str(tmp_path / "out.mp4"), "--model", str(ENGINE), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and files(tmp_path) == []


def test_existing_output_needs_overwrite_and_the_input_is_never_the_output(clips, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    assert main(["video", str(clips["cfr"]), "-o", str(out), "--model", str(ENGINE)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(["video", str(clips["cfr"]), "-o", str(clips["cfr"]), "--model", str(ENGINE), "--overwrite"]) == 2
    assert "is the input" in capsys.readouterr().err


def _frames(path: Path) -> list:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_frame_path_device_writes_the_frames_of_the_host_path(tmp_path, capsys):
    """On ONNX Runtime CPU the device frame path runs the host kernels in its own flow
    (tests/faces/test_device.py): the restored frames, hence the encoded video, are the host path's,
    the crops filtered along their tracks on both (one engine worker: the device path's filter runs there)."""
    require((ENGINE / "manifest.json").is_file(), f"{ENGINE} (the shipped demo engine)")
    frames, _ = static_face_frames(6, eye_distance=15.0, size=(160, 96))
    src = write_clip(tmp_path / "in.mp4", cfr_pts(6), size=(160, 96), frame=lambda i: frames[i])
    outs = {}
    for path in ("host", "device"):
        outs[path] = tmp_path / f"{path}.mp4"
        code = main(
            [
                "video",
                str(src),
                "-o",
                str(outs[path]),
                "--model",
                str(ENGINE),
                "--backend",
                "onnxruntime",
                "--device",
                "cpu",
                "--batch-size",
                "4",
                "--preset",
                "ultrafast",
                "--encoder-threads",
                "1",
                "--frame-path",
                path,
                "--workers",
                "1",
            ]
        )
        assert code == 0, capsys.readouterr().err
    host, device = _frames(outs["host"]), _frames(outs["device"])
    diff = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(host, device))
    print(f"frame path device vs host: {len(device)} frames, max error {diff}")
    assert len(host) == len(device) == 6 and diff == 0
    assert any((a != b).any() for a, b in zip(_frames(src), host))  # faces were restored


def test_frame_path_device_without_device_kernels_is_exit_2(clips, tmp_path, capsys):
    code = main(
        [
            "video",
            str(clips["cfr"]),
            "-o",
            str(tmp_path / "out.mp4"),
            "--model",
            "random:tiny",
            "--backend",
            "torch",
            "--device",
            "cpu",
            "--frame-path",
            "device",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    print(err)
    assert code == 2 and err == [err[0]] and err[0].startswith("error: frame path device: needs a Restorer")
    assert files(tmp_path) == []
