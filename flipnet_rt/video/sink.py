"""Writing the output video: encode the restored frames, copy the other streams packet for packet.

The output is written to a hidden temporary file in the destination's folder and renamed over the
destination only by :meth:`VideoSink.commit`; :meth:`VideoSink.abort` (any exception, Ctrl-C)
deletes it, so a failed run leaves nothing. (A process killed with SIGKILL cannot clean up: its
``.NAME.partial-*`` file stays, never the destination.)

The video encoder works in the input stream's time base and every frame keeps its input pts,
so variable-frame-rate timing is reproduced exactly instead of being resampled to a fixed rate.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .encoding import EncoderOptions, choose_pix_fmt
from .errors import VideoError
from .frames import Frame
from .source import VideoInfo, VideoSource

if TYPE_CHECKING:
    from av.container import OutputContainer
    from av.video.stream import VideoStream

log = logging.getLogger(__name__)


def partial_path(destination: Path) -> Path:
    """A hidden temporary name next to ``destination`` with the same extension (the muxer's choice)."""
    return destination.with_name(f".{destination.stem}.partial-{secrets.token_hex(4)}{destination.suffix}")


def _muxer_options(destination: Path, colour: dict[str, int] | None = None) -> dict[str, str]:
    """Matroska shifts every stream when one starts below 0 (AAC priming packets do), moving the
    video off its input timestamps; its blocks carry signed times, so keep them as they are.
    MP4 writes its colour box only when matrix, primaries and transfer are all known, so a range
    alone (a limited-range VP9 with nothing else tagged; libx264 does not signal it in the stream)
    would be lost: ask for the box. (MOV's box has no range field.)"""
    suffix = destination.suffix.lower()
    if suffix in (".mkv", ".mka", ".webm"):
        return {"avoid_negative_ts": "disabled"}
    if suffix in (".mp4", ".m4v") and colour and colour.get("color_range"):
        return {"movflags": "+write_colr"}
    return {}


class VideoSink:
    """The output video of one :class:`VideoSource`: open, write frames and packets, commit or abort."""

    def __init__(self, destination: str | os.PathLike, source: VideoSource, encoder: EncoderOptions) -> None:
        self.destination = Path(destination)
        self.source = source
        self.encoder = encoder
        self.tmp = partial_path(self.destination)
        self.container: OutputContainer | None = None
        self.video: VideoStream | None = None
        self._copies: dict[int, tuple[object, int]] = {}  # input stream index -> (output stream, shift)
        self.frames = 0
        self.packets = 0
        self.pix_fmt = encoder.pix_fmt  # the encoded pixel format, settled by open()

    def open(self) -> VideoSink:
        import av

        info = self.source.info
        assert info is not None, "open the source first"
        try:  # settled before anything is written: a size the encoder refuses is one line, no file
            self.pix_fmt, change = choose_pix_fmt(
                self.encoder, info.pix_fmt, info.width, info.height, name=str(self.source.path)
            )
        except ValueError as exc:
            raise VideoError(str(exc)) from None
        if change:
            log.warning("%s", change)
        try:
            container = self.container = av.open(
                str(self.tmp), "w", options=_muxer_options(self.destination, info.colour)
            )
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            self.tmp.unlink(missing_ok=True)
            raise VideoError(
                f"{self.destination}: cannot write this kind of file ({exc}); "
                f"use an .mp4, .mkv or .mov name and check the folder is writable"
            ) from None
        try:
            self._add_video(container, info)
            for stream in self.source.copy_streams:
                self._add_copy(container, stream)
        except BaseException:
            self.abort()
            raise
        return self

    def _add_video(self, container: OutputContainer, info: VideoInfo) -> None:
        import av
        from av.video.stream import VideoStream

        enc = self.encoder
        try:
            stream = container.add_stream(enc.codec, rate=info.rate, options=enc.codec_options())
        except (ValueError, av.error.FFmpegError) as exc:  # e.g. "'webm' format does not support 'libx264' codec"
            raise VideoError(
                f"{self.destination}: a {self.destination.suffix} file cannot hold {enc.codec} video "
                f"({exc}); use an .mkv name or another --codec"
            ) from None
        if not isinstance(stream, VideoStream):
            raise VideoError(f"--codec {enc.codec}: not a video codec ({stream.type}); use a video codec")
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, self.pix_fmt
        stream.time_base = info.time_base  # the input's: every frame keeps its pts (VFR included)
        cc = stream.codec_context
        cc.time_base = info.time_base
        cc.thread_count = enc.threads
        if info.sample_aspect_ratio:
            cc.sample_aspect_ratio = info.sample_aspect_ratio
        for key, value in info.colour.items():
            setattr(cc, key, value)
        self.video = stream

    def _add_copy(self, container: OutputContainer, stream) -> None:
        name = stream.codec_context.name if stream.codec_context is not None else "unknown codec"
        supported = container.supported_codecs
        if stream.codec_context is not None and supported and name not in supported:
            log.warning(
                "%s: stream #%d (%s %s) cannot go in a %s file and is dropped; use .mkv to keep it",
                self.destination,
                stream.index,
                stream.type,
                name,
                self.destination.suffix,
            )
            return
        try:
            out = container.add_stream_from_template(stream)
        except Exception as exc:  # PyAV raises ValueError/FFmpegError for codecs the muxer refuses
            log.warning(
                "%s: stream #%d (%s %s) cannot be copied (%s) and is dropped",
                self.destination,
                stream.index,
                stream.type,
                name,
                exc,
            )
            return
        self._copies[stream.index] = (out, self.source.shift(stream.time_base))

    def _opened(self) -> tuple[OutputContainer, VideoStream]:
        """The output file and its video stream (``open`` first)."""
        if self.container is None or self.video is None:
            raise RuntimeError(f"{self.destination}: the sink is not open")
        return self.container, self.video

    # ------------------------------------------------------------------ write
    def write_frame(self, frame: Frame) -> None:
        """Encode one restored frame at its input pts (``[H, W, 3]`` uint8 RGB)."""
        import av

        info = self.source.info
        assert info is not None, "open() first"
        container, video = self._opened()
        image = frame.image
        if image.shape != (info.height, info.width, 3) or image.dtype != np.uint8:
            raise VideoError(
                f"{self.destination}: frame {frame.index} is {image.shape} {image.dtype}; "
                f"the processor must return [{info.height}, {info.width}, 3] uint8"
            )
        rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        rgb.colorspace = info.colour.get("colorspace", 2)
        out = rgb.reformat(format=self.pix_fmt, dst_color_range=info.colour.get("color_range") or None)
        out.pts = frame.pts
        out.time_base = frame.time_base
        for packet in video.encode(out):
            container.mux(packet)
        self.frames += 1

    def write_packet(self, packet) -> None:
        """Copy one packet of an audio/subtitle/data stream, untouched but for the ``start`` shift."""
        target = self._copies.get(packet.stream.index)
        if target is None:
            return
        stream, shift = target
        if shift:
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
        packet.stream = stream
        self._opened()[0].mux(packet)
        self.packets += 1

    # ------------------------------------------------------------------ finish
    def commit(self) -> Path:
        """Flush the encoder, close the file and move it onto the destination (atomic rename)."""
        try:
            container, video = self._opened()
            for packet in video.encode(None):
                container.mux(packet)
            container.close()
            self.container = None
            os.replace(self.tmp, self.destination)
        except BaseException:
            self.abort()
            raise
        return self.destination

    def abort(self) -> None:
        """Drop everything written so far: the destination is left as it was."""
        if self.container is not None:
            try:
                self.container.close()
            except Exception as exc:  # closing a half-written file can fail; it is deleted anyway
                log.debug("closing %s: %s", self.tmp, exc)
            self.container = None
        self.tmp.unlink(missing_ok=True)
