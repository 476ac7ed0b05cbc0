"""Reading a video with PyAV: decoded frames of the first video stream, copied packets of the rest.

:class:`VideoSource` opens and checks the input (one :class:`~.errors.VideoError` line when it is
not a video, has no decodable video stream, or turns out truncated or corrupt), then yields, in
file order, :class:`~.frames.Frame` objects for the video and raw ``av.Packet`` objects for every
audio, subtitle and data stream, which are remuxed untouched. ``start``/``duration`` cut a range;
timestamps inside it are shifted by ``start`` so the output begins at 0, and are otherwise the
input's own (variable frame rate included).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import VideoError
from .frames import Frame

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

log = logging.getLogger(__name__)

#: Slack before a video that ends early is called truncated: container durations are rounded
#: and the last frame's duration is often missing.
TRUNCATION_SLACK_S = 0.5
COPY_TYPES = ("audio", "subtitle", "data")


@dataclass(frozen=True)
class VideoInfo:
    """What the encoder needs to reproduce the input's video stream."""

    width: int
    height: int
    time_base: Fraction
    rate: Fraction | None  # average frame rate (None: unknown); informative only for VFR input
    frames: int | None  # expected frame count in the range (None: unknown)
    colour: dict[str, int] = field(default_factory=dict)  # colorspace, color_range, color_primaries, color_trc
    sample_aspect_ratio: Fraction | None = None
    codec: str = ""
    pix_fmt: str | None = None  # the decoded pixel format (bit depth, chroma); None: unknown


def _describe(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).rstrip(".")


class VideoSource:
    """The input video: ``open`` checks it, ``items`` streams it, ``close`` releases it.

    start, duration: seconds; the range [start, start + duration) of the input (None: all).
    """

    def __init__(self, path: str | os.PathLike, *, start: float | None = None, duration: float | None = None) -> None:
        if start is not None and start < 0:
            raise ValueError(f"--start {start}: must be 0 or more seconds")
        if duration is not None and duration <= 0:
            raise ValueError(f"--duration {duration}: must be more than 0 seconds")
        self.path = Path(path)
        self.start = start or 0.0
        self.end = None if duration is None else self.start + duration
        self.container: InputContainer | None = None
        self.video: VideoStream | None = None
        self.copy_streams: list = []
        self.info: VideoInfo | None = None
        self.decoded = 0

    # ------------------------------------------------------------------ open
    def open(self) -> VideoSource:
        import av

        if not self.path.is_file():
            raise VideoError(f"{self.path}: no such file")
        try:
            c = self.container = av.open(str(self.path), "r")
        except av.error.FFmpegError as exc:
            raise VideoError(
                f"{self.path}: not a video FFmpeg can read ({_describe(exc)}); "
                f"check the file is complete and is a video"
            ) from None
        if not c.streams.video:
            self.close()
            raise VideoError(
                f"{self.path}: has no video stream (streams: "
                f"{', '.join(s.type for s in c.streams) or 'none'}); give a video file"
            )
        video = c.streams.video[0]
        if video.codec_context is None:
            self.close()
            raise VideoError(
                f"{self.path}: unsupported video codec (FFmpeg in PyAV has no decoder for it); "
                f"re-encode it, e.g. `ffmpeg -i IN -c:v libx264 -c:a copy OUT.mp4`"
            )
        video.thread_type = "AUTO"
        self.video = video
        self.copy_streams = [s for s in c.streams if s.type in COPY_TYPES]
        for s in c.streams:
            if s is not video and s.type not in COPY_TYPES:
                log.warning("%s: stream #%d (%s) is not copied", self.path, s.index, s.type)
        if video.time_base is None:
            self.close()
            raise VideoError(f"{self.path}: video stream has no time base; the file is damaged")
        cc = video.codec_context
        rate = video.average_rate or video.guessed_rate
        colour = {k: int(getattr(cc, k)) for k in ("colorspace", "color_range", "color_primaries", "color_trc")}
        pix_fmt = cc.pix_fmt or None
        if pix_fmt and pix_fmt.startswith("yuvj") and not colour["color_range"]:
            colour["color_range"] = 2  # the deprecated yuvj* formats are full range by definition
        self.info = VideoInfo(
            width=cc.width,
            height=cc.height,
            time_base=video.time_base,
            rate=Fraction(rate) if rate else None,
            frames=self._expected_frames(video, rate),
            colour=colour,
            sample_aspect_ratio=cc.sample_aspect_ratio,
            codec=cc.name,
            pix_fmt=pix_fmt,
        )
        if self.info.width <= 0 or self.info.height <= 0:
            self.close()
            raise VideoError(f"{self.path}: video stream has no frame size; the file is damaged")
        return self

    def _expected_frames(self, video, rate) -> int | None:
        whole = video.frames if video.frames > 0 else None
        seconds = self._stream_seconds(video)
        if self.start == 0 and self.end is None and whole:
            return whole
        if seconds is None or not rate:
            return None
        end = seconds if self.end is None else min(self.end, seconds)
        return max(0, round((end - self.start) * float(rate)))

    def _stream_seconds(self, video) -> float | None:
        """The video stream's duration from the header (None: the container does not say)."""
        if video.duration:
            return float(video.duration * video.time_base)
        tag = video.metadata.get("DURATION")  # Matroska writes one per stream
        if tag:
            try:
                h, m, s = tag.split(":")
                return int(h) * 3600 + int(m) * 60 + float(s)
            except ValueError:
                return None
        return None

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None

    def __enter__(self) -> VideoSource:
        return self.open() if self.container is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ read
    def shift(self, time_base: Fraction) -> int:
        """Ticks subtracted from every timestamp of a stream in ``time_base`` (``start`` seconds)."""
        return round(Fraction(self.start).limit_denominator(10**9) / time_base) if self.start else 0

    def items(self) -> Iterator[Frame | object]:
        """Frames of the video stream and packets of the copied streams, in file order.

        Frames carry pts shifted by ``start``; packets are yielded unshifted (the sink shifts
        them with :meth:`shift`). Raises VideoError when the file is truncated or corrupt.
        """
        import av

        video, c = self.video, self.container
        assert video is not None and c is not None, "open() first"
        tb = video.time_base
        assert tb is not None, "open() refuses a video stream without one"
        if self.start:
            c.seek(int(self.start / tb), stream=video, backward=True, any_frame=False)
        shift = self.shift(tb)
        last_time = None
        ended = {s.index: False for s in (video, *self.copy_streams)}
        try:
            for packet in c.demux(video, *self.copy_streams):
                if packet.stream.index != video.index:
                    if packet.size == 0 or ended[packet.stream.index]:
                        continue
                    t = None if packet.pts is None else float(packet.pts * packet.time_base)
                    if self.start and t is not None and t < self.start:
                        continue  # (without --start, keep everything: AAC priming packets have pts < 0)
                    if t is not None and self.end is not None and t >= self.end:
                        ended[packet.stream.index] = True
                    else:
                        yield packet
                    continue
                if packet.is_corrupt:
                    raise VideoError(
                        f"{self.path}: corrupt video data near {self._at(last_time)}; "
                        f"the file is damaged, re-encode or re-download it"
                    )
                for frame in video.decode(packet):  # = packet.decode(), typed as video frames
                    pts = frame.pts
                    t = None if pts is None else float(pts * tb)
                    if self.start and t is not None and t < self.start - 1e-9:
                        continue
                    if ended[video.index] or (t is not None and self.end is not None and t >= self.end):
                        ended[video.index] = True
                        continue
                    image = frame.to_ndarray(format="rgb24", src_color_range=int(frame.color_range) or None)
                    yield Frame(self.decoded, None if pts is None else pts - shift, tb, image)
                    self.decoded += 1
                    last_time = t
                if all(ended.values()):
                    break
        except av.error.FFmpegError as exc:
            raise VideoError(
                f"{self.path}: truncated or corrupt video near {self._at(last_time)} "
                f"({_describe(exc)}); re-encode or re-download it"
            ) from None
        self._check_complete(last_time)

    def _at(self, seconds: float | None) -> str:
        return "the start" if seconds is None else f"{seconds:.2f} s (frame {self.decoded})"

    def _check_complete(self, last_time: float | None) -> None:
        """A video that decodes without error but ends well before its header says is truncated."""
        if self.decoded == 0:
            raise VideoError(
                f"{self.path}: no video frame decoded"
                + (f" in [{self.start}, {self.end}) s" if self.start or self.end else "")
                + "; the file is empty or damaged, or the range is past its end"
            )
        video = self.video
        assert video is not None, "open() first"  # frames were decoded
        header_frames = video.frames if video.frames > 0 else None
        expected = self._stream_seconds(video)
        if self.end is not None and expected is not None:
            expected = min(expected, self.end)
        if self.start == 0 and self.end is None and header_frames and self.decoded < header_frames:
            short = f"{self.decoded} of {header_frames} frames"
        elif (
            expected is not None
            and last_time is not None
            and last_time
            < expected - TRUNCATION_SLACK_S - (float(1 / self.info.rate) if self.info and self.info.rate else 0.0)
        ):
            short = f"ends at {last_time:.2f} s of {expected:.2f} s"
        else:
            return
        raise VideoError(f"{self.path}: truncated video ({short}); re-encode or re-download it")
