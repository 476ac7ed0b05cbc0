"""The unit the video layer passes between its stages, and the contract of a frame processor.

A :class:`Frame` is one decoded picture with the timestamp it had in the input; a
:class:`FrameProcessor` turns a stream of frames into the same stream, in order, possibly later
(a processor may hold a bounded number of frames to look ahead or to batch them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One picture of a video.

    index: position in the processed range (0 = first frame written).
    pts: presentation timestamp in ``time_base`` units, as in the input (None: the input had none).
    image: ``[H, W, 3]`` uint8 RGB.
    faces: faces detected ahead, in another thread (``VideoRestorer.detect_ahead``); None: not yet.
    """

    index: int
    pts: int | None
    time_base: Fraction
    image: np.ndarray
    faces: tuple | None = None

    @property
    def time(self) -> float | None:
        """Presentation time in seconds."""
        return None if self.pts is None else float(self.pts * self.time_base)

    def with_image(self, image: np.ndarray) -> Frame:
        return replace(self, image=image)


class FrameProcessor(Protocol):
    """Frames in, the same frames out in the same order (images changed, timestamps kept).

    ``push`` may return nothing (the frame is held) or several frames (earlier held ones first);
    ``flush`` returns everything still held. Memory held is bounded by the processor's window,
    never by the video's length.
    """

    def push(self, frame: Frame) -> list[Frame]: ...

    def flush(self) -> list[Frame]: ...
