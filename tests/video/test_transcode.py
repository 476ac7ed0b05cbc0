"""The streaming I/O on its own (identity processor): timestamps, copied audio, errors, atomicity."""

from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from video.clips import cfr_pts, frame_times, gradient, stream_packets, write_clip
from video.processors import IdentityProcessor

from flipnet_rt.runtime.profiling import StageTimer
from flipnet_rt.video.encoding import EncoderOptions
from flipnet_rt.video.errors import VideoError
from flipnet_rt.video.frames import Frame
from flipnet_rt.video.transcode import transcode


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


@pytest.mark.parametrize("kind", ["cfr", "vfr"])
def test_identity_keeps_every_timestamp_and_the_audio_bytes(clips, tmp_path, kind):
    out = tmp_path / f"{kind}.mp4"
    timer = StageTimer()
    report = transcode(clips[kind], out, IdentityProcessor(), timer=timer)
    want, got = frame_times(clips[kind]), frame_times(out)
    gaps = {float(b - a) for a, b in zip(want, want[1:])}
    print(
        f"{kind}: {len(got)} frames (input {len(want)}), distinct frame gaps {sorted(gaps)} s; stages {timer.totals()}"
    )
    assert report.frames == len(want) == 60
    assert got == want  # exact rationals: every frame's pts x time base
    if kind == "vfr":
        assert len(gaps) > 3  # the clip really is variable-rate
    a, b = stream_packets(clips[kind]), stream_packets(out)
    print(f"audio: {len(b)} packets out, {len(a)} in, {sum(len(p) for _, p in b)} bytes")
    assert len(a) > 10 and a == b  # same count, same times, byte-identical payloads
    assert report.packets == len(a)
    assert leftovers(tmp_path) == []


def test_pixels_survive_the_round_trip(clips, tmp_path):
    out = tmp_path / "cfr.mp4"
    transcode(clips["cfr"], out, IdentityProcessor())
    with av.open(str(clips["cfr"])) as a, av.open(str(out)) as b:
        worst = min(
            10
            * np.log10(
                255**2
                / max(np.mean((x.to_ndarray(format="rgb24").astype(float) - y.to_ndarray(format="rgb24")) ** 2), 1e-9)
            )
            for x, y in zip(a.decode(video=0), b.decode(video=0))
        )
    print(f"identity re-encode (crf 18): worst frame PSNR {worst:.1f} dB")
    # crf 18 on a smooth gradient; 4:2:0 chroma and two YUV<->RGB conversions cost a few dB. A
    # colour-matrix mismatch (BT.601 vs 709) would drop this below 30 dB.
    assert worst > 38


def test_colour_metadata_is_kept(tmp_path):
    bt709 = {"colorspace": 1, "color_range": 1, "color_primaries": 1, "color_trc": 1}
    src = write_clip(tmp_path / "709.mp4", cfr_pts(10), colour=bt709, audio=False)
    out = tmp_path / "out.mp4"
    transcode(src, out, IdentityProcessor())
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        got = {k: int(getattr(cc, k)) for k in bt709}
    with av.open(str(src)) as a, av.open(str(out)) as b:
        x = next(a.decode(video=0)).to_ndarray(format="rgb24", src_colorspace=1, src_color_range=1)
        y = next(b.decode(video=0)).to_ndarray(format="rgb24", src_colorspace=1, src_color_range=1)
    err = np.abs(x.astype(int) - y).mean()
    print(f"output colour tags {got}; mean |RGB difference| decoding both as BT.709: {err:.2f}")
    assert got == bt709
    assert err < 2.0  # encoded with the same matrix it was decoded with (601 vs 709 gives ~5-10)


def test_start_and_duration_cut_a_range(clips, tmp_path):
    out = tmp_path / "cut.mp4"
    report = transcode(clips["cfr"], out, IdentityProcessor(), start=0.8, duration=1.0)
    times = frame_times(out)
    source = [t for t in frame_times(clips["cfr"]) if Fraction(4, 5) <= t < Fraction(9, 5)]
    audio = stream_packets(out)
    print(
        f"cut: {len(times)} frames {float(times[0])}..{float(times[-1])} s; audio {len(audio)} packets "
        f"{float(audio[0][0]):.3f}..{float(audio[-1][0]):.3f} s"
    )
    assert report.frames == len(source) == 25
    assert times == [t - Fraction(4, 5) for t in source]  # shifted by exactly --start
    assert 0 <= float(audio[0][0]) < 0.07 and float(audio[-1][0]) < 1.0


def test_not_a_video_is_one_line_and_nothing_written(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(b"this is not a video\n" * 50)
    out = tmp_path / "out.mp4"
    with pytest.raises(VideoError) as err:
        transcode(bad, out, IdentityProcessor())
    print(err.value)
    assert "notes.mp4" in str(err.value) and "\n" not in str(err.value)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("layout", ["mp4-faststart", "mkv"])
def test_truncated_video_fails_and_leaves_nothing(tmp_path, layout):
    suffix, options = (".mp4", {"movflags": "faststart"}) if layout == "mp4-faststart" else (".mkv", {})
    full = write_clip(
        tmp_path / f"full{suffix}",
        cfr_pts(50),
        options=options,
        frame=lambda i: np.random.default_rng(i).integers(0, 255, (64, 96, 3), np.uint8),
    )
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out.mp4"
    with pytest.raises(VideoError) as err:
        transcode(cut, out, IdentityProcessor())
    print(err.value)
    assert "truncated" in str(err.value) and "cut" in str(err.value)
    assert not out.exists() and leftovers(tmp_path) == []


def test_unsupported_codec(tmp_path):
    path = tmp_path / "mpeg4.avi"
    with av.open(str(path), "w") as out:
        v = out.add_stream("mpeg4", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            f = av.VideoFrame.from_ndarray(gradient(64, 48, i), format="rgb24")
            f.pts = i
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
    data = path.read_bytes()
    assert data.count(b"FMP4") == 2  # the AVI's codec tags; an unknown tag has no decoder
    path.write_bytes(data.replace(b"FMP4", b"QQQQ"))
    with pytest.raises(VideoError) as err:
        transcode(path, tmp_path / "out.mp4", IdentityProcessor())
    print(err.value)
    assert "unsupported video codec" in str(err.value)


class Failing(IdentityProcessor):
    def __init__(self, exc: BaseException, at: int) -> None:
        self.exc, self.at = exc, at

    def push(self, frame: Frame) -> list[Frame]:
        if frame.index == self.at:
            raise self.exc
        return [frame]


@pytest.mark.parametrize("exc", [RuntimeError("engine failed"), KeyboardInterrupt()])
def test_failure_or_ctrl_c_midway_leaves_the_destination_as_it_was(clips, tmp_path, exc):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous")
    with pytest.raises(type(exc)):
        transcode(clips["cfr"], out, Failing(exc, at=30))
    assert out.read_bytes() == b"previous" and leftovers(tmp_path) == []


def test_encoder_failure_in_its_thread_reaches_the_caller(clips, tmp_path):
    class WrongSize(IdentityProcessor):
        def push(self, frame: Frame) -> list[Frame]:
            return [frame.with_image(frame.image[:10])]

    with pytest.raises(VideoError, match="must return"):
        transcode(clips["cfr"], tmp_path / "out.mp4", WrongSize())
    assert leftovers(tmp_path) == [] and not (tmp_path / "out.mp4").exists()


def test_bad_encoder_options_are_refused_when_made():
    """Checked once, when made (no EncoderOptions that cannot encode exists); errors name the field."""
    for options, match in [
        ({"codec": "nope"}, "^codec: nope: this FFmpeg .* no such encoder"),
        ({"codec": "aac"}, "^codec: aac is a audio encoder"),
        ({"pix_fmt": "rgb48le"}, "^pix_fmt: rgb48le; libx264 takes auto, "),
        ({"crf": 99}, "^crf: 99 is outside 0..63"),
        ({"threads": -1}, r"^threads: -1; use 0 \(automatic\) or more$"),
    ]:
        with pytest.raises(ValueError, match=match):
            EncoderOptions(**options)


def test_holding_processor_keeps_audio_in_order(clips, tmp_path):
    """A processor that holds 12 frames (like the look-ahead) still yields the same streams."""

    class Holding:
        def __init__(self) -> None:
            self.held: list[Frame] = []

        def push(self, frame: Frame) -> list[Frame]:
            self.held.append(frame)
            return [self.held.pop(0)] if len(self.held) > 12 else []

        def flush(self) -> list[Frame]:
            out, self.held = self.held, []
            return out

    out = tmp_path / "held.mp4"
    transcode(clips["vfr"], out, Holding())
    assert frame_times(out) == frame_times(clips["vfr"])
    assert stream_packets(out) == stream_packets(clips["vfr"])


def test_mp4_to_matroska_keeps_timestamps(clips, tmp_path):
    """Matroska counts in milliseconds (so the 25 fps clip is exact) and, left to itself, shifts
    every stream by the AAC priming delay (64 ms): the sink keeps the input's times instead."""
    out = tmp_path / "cfr.mkv"
    transcode(clips["cfr"], out, IdentityProcessor())
    assert frame_times(out) == frame_times(clips["cfr"])
    assert stream_packets(out) == stream_packets(clips["cfr"])


def test_prepare_runs_in_order_in_its_own_thread(clips, tmp_path):
    import threading

    seen, threads = [], set()

    def prepare(frame: Frame) -> Frame:
        seen.append(frame.index)
        threads.add(threading.current_thread().name)
        return frame.with_image(255 - frame.image)

    class Check(IdentityProcessor):
        def push(self, frame: Frame) -> list[Frame]:
            assert threading.current_thread() is threading.main_thread()
            return [frame]

    out = tmp_path / "neg.mp4"
    transcode(clips["vfr"], out, Check(), prepare=prepare)
    assert seen == list(range(60)) and threads == {"flipnet-prepare"}
    assert frame_times(out) == frame_times(clips["vfr"])
    with av.open(str(clips["vfr"])) as a, av.open(str(out)) as b:
        x, y = next(a.decode(video=0)).to_ndarray(format="rgb24"), next(b.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs((255 - x.astype(int)) - y).mean() < 3  # the prepared (negated) frames were written


def test_prepare_failure_stops_everything(clips, tmp_path):
    def prepare(frame: Frame) -> Frame:
        if frame.index == 20:
            raise RuntimeError("detector failed")
        return frame

    with pytest.raises(RuntimeError, match="detector failed"):
        transcode(clips["cfr"], tmp_path / "out.mp4", IdentityProcessor(), prepare=prepare)
    assert os.listdir(tmp_path) == []


def subtitled_clip(path: Path) -> Path:
    """An MKV with H.264 video and a SubRip track of 3 cues (muxed as ready-made packets)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        s = out.add_mux_stream("subrip")
        s.time_base = Fraction(1, 1000)
        for i in range(25):
            f = av.VideoFrame.from_ndarray(gradient(64, 48, i), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 25)
            for p in v.encode(f):
                out.mux(p)
            if i % 10 == 0:
                cue = av.Packet(f"cue at frame {i}".encode())
                cue.stream, cue.pts, cue.dts, cue.duration, cue.time_base = s, 40 * i, 40 * i, 300, Fraction(1, 1000)
                out.mux(cue)
        for p in v.encode(None):
            out.mux(p)
    return path


def test_subtitles_are_copied_where_the_container_takes_them(tmp_path, caplog):
    src = subtitled_clip(tmp_path / "sub.mkv")
    cues = stream_packets(src, "subtitles")
    assert [p for _, p in cues] == [b"cue at frame 0", b"cue at frame 10", b"cue at frame 20"]
    transcode(src, tmp_path / "out.mkv", IdentityProcessor())
    assert stream_packets(tmp_path / "out.mkv", "subtitles") == cues
    with caplog.at_level("WARNING"):
        transcode(src, tmp_path / "out.mp4", IdentityProcessor())  # MP4 takes no SubRip: dropped, said so
    print(caplog.text)
    assert "cannot go in a .mp4 file" in caplog.text and "use .mkv" in caplog.text
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert [s.type for s in c.streams] == ["video"]


SLOW_IDENTITY = """
import sys, time
from flipnet_rt.video.transcode import transcode

class Slow:  # tests/video/processors.py's IdentityProcessor, slowed (tests/ is not on this path)
    def push(self, frame):
        time.sleep(0.01)
        return [frame]

    def flush(self):
        return []

try:
    transcode(sys.argv[1], sys.argv[2], Slow())
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_sigint_midway_leaves_nothing(clips, tmp_path):
    """A real Ctrl-C (SIGINT) to a process writing a video: no output, no partial file."""
    import signal
    import subprocess
    import time

    src = write_clip(tmp_path / "long.mp4", cfr_pts(600), size=(64, 48), audio=False)
    out = tmp_path / "out" / "restored.mp4"
    out.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_IDENTITY, str(src), str(out)])
    deadline = time.monotonic() + 60
    while not leftovers(out.parent) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert leftovers(out.parent), "the partial file never appeared"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert os.listdir(out.parent) == []
