"""Frame processors for the video tests (flipnet_rt.video.frames.FrameProcessor)."""

from __future__ import annotations

from flipnet_rt.video.frames import Frame


class IdentityProcessor:
    """Returns every frame unchanged at once: the I/O path on its own (decode, encode, timestamps)."""

    def push(self, frame: Frame) -> list[Frame]:
        return [frame]

    def flush(self) -> list[Frame]:
        return []
