"""Restore the faces of a video, frame by frame, with one noise seed per face track (DESIGN §7).

:class:`VideoRestorer` is a :class:`~.frames.FrameProcessor`: frames go in in order and come out
in order, restored, after a bounded delay.

1. detect faces every ``detect_every`` frames (and on the last frame);
2. track them (:class:`~.tracker.FaceTracker`): every track keeps one seed for its life
   (:func:`~.tracker.track_seed`), so a still face is sampled from the same noise in every frame
   and does not flicker;
3. once ``lookahead`` newer frames have been seen, smooth each track's landmarks around the frame
   and fill short misses (:class:`~.smoothing.TrackSmoother`);
4. gather frames until their faces fill ``batch_size``, restore all those faces in one core
   batch and paste them back (:meth:`flipnet_rt.faces.restorer.FaceRestorer.restore_faces`).

Frames held at once: at most ``lookahead + 1`` waiting for look-ahead plus one batch, never more.
Three ways to use it: as a processor for :func:`~.transcode.transcode`; ``push``/``flush``;
or ``feed``/``pull`` (and ``restore_frames``, a generator), with ``close()`` or a ``with`` block.
"""

from __future__ import annotations

import logging
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass, replace
from enum import Enum
from fractions import Fraction
from typing import Any, Iterable, Iterator

import numpy as np

from ..options import image_seed
from ..profiling import StageTimer
from .frames import Frame
from .smoothing import TrackSmoother
from .tracker import FaceTracker, track_seed

log = logging.getLogger(__name__)


class SeedMode(str, Enum):
    """Where each face's sampling noise comes from."""

    TRACK = "track"  # one seed per face track for its life: no flicker (the default)
    FRAME = "frame"  # a new seed per frame and face: what restoring frames one by one does (flickers)


@dataclass(frozen=True)
class VideoOptions:
    """How faces are found and batched across frames.

    batch_size: faces per engine call, gathered from consecutive frames (more: faster per face on
        a GPU and on the CPU up to ~4-8, at the cost of ``batch_size`` frames of latency and memory).
    detect_every: run the detector on every k-th frame only; faces in between are interpolated from
        the detections around them (k-1 fewer detector runs; a face that appears and leaves
        between two detections is missed, and fast motion is followed less closely).
    lookahead: frames seen past a frame before its faces are smoothed (>= detect_every).
    smoothing: Gaussian width, in frames, of the landmark smoothing (0: off).
    max_gap: longest run of frames without a detection filled by interpolation (misses, and the
        frames between detections when detect_every > 1).
    seed: base seed; seed_mode: :class:`SeedMode`.
    """

    batch_size: int = 8
    detect_every: int = 1
    lookahead: int = 10
    smoothing: float = 2.0
    max_gap: int = 3
    seed: int = 0
    seed_mode: SeedMode = SeedMode.TRACK

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed_mode", SeedMode(self.seed_mode))
        if self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size}: must be 1 or more")
        if self.detect_every < 1:
            raise ValueError(f"--detect-every {self.detect_every}: must be 1 or more")
        if self.lookahead < self.detect_every:
            raise ValueError(f"--lookahead {self.lookahead}: must be at least --detect-every "
                             f"{self.detect_every}, so the next detection is seen before a frame is finished")
        if self.smoothing < 0:
            raise ValueError(f"--smoothing {self.smoothing}: must be 0 (off) or more frames")

    @property
    def gap(self) -> int:
        """Gaps filled: ``max_gap`` or the frames between two detections, whichever is longer."""
        return min(max(self.max_gap, self.detect_every - 1), self.lookahead)


@dataclass
class _Held:
    frame: Frame
    faces: list = None  # [(track id, Face)] once planned
    detected: bool = False


class VideoRestorer:
    """Restores the faces of a stream of frames (see the module's docstring).

    Args:
        faces: a :class:`flipnet_rt.faces.restorer.FaceRestorer` (its options, e.g.
            ``min_face_size`` or ``max_faces``, apply to every frame).
        options: :class:`VideoOptions`.
        detector: a :class:`~flipnet_rt.faces.types.FaceDetector` (default: ``faces.detector``).
        timer: records busy time of ``detect``, ``track`` and ``faces`` (align + restore + paste).
    """

    def __init__(self, faces: Any, options: VideoOptions | None = None, *, detector: Any | None = None,
                 timer: StageTimer | None = None) -> None:
        self.faces = faces
        self.options = options or VideoOptions()
        self.detector = detector if detector is not None else faces.detector
        self.timer = timer
        o = self.options
        self.tracker = FaceTracker(max_age=max(o.lookahead, 2 * o.detect_every))
        self.smoother = TrackSmoother(window=o.lookahead, sigma=o.smoothing, max_gap=o.gap)
        self._held: deque[_Held] = deque()  # decoded, waiting for look-ahead
        self._batch: list[_Held] = []  # planned, waiting for the batch to fill
        self._ready: deque[Frame] = deque()  # restored, for pull()
        self._count = 0
        self._closed = False
        self.tracks_seen = 0

    def _stage(self, name: str):
        return self.timer.stage(name) if self.timer is not None else nullcontext()

    # ------------------------------------------------------------------ processor API
    def push(self, frame: Frame | np.ndarray, pts: int | None = None) -> list[Frame]:
        """Take the next frame (a :class:`Frame` or an ``[H, W, 3]`` uint8 RGB image); returns the
        frames finished by it, in order (often none: frames wait for look-ahead and batching)."""
        if self._closed:
            raise RuntimeError("VideoRestorer is closed; make a new one for another video")
        if not isinstance(frame, Frame):
            frame = Frame(self._count, pts, Fraction(1), np.asarray(frame))
        image = frame.image
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"frame {self._count}: expected a uint8 [H, W, 3] RGB image, "
                             f"got {image.dtype} {image.shape}")
        ahead = frame.faces
        frame = Frame(self._count, frame.pts, frame.time_base, image)  # our own index: the tracker's clock
        self._count += 1
        held = _Held(frame)
        self._held.append(held)
        if ahead is not None:
            self._track(held, list(ahead))
        elif frame.index % self.options.detect_every == 0:
            self._detect(held)
        return self._advance(final=False)

    def detect_ahead(self, frame: Frame) -> Frame:
        """Run the detector on ``frame`` if it is a detection frame (its ``index`` counts from 0 with
        no gaps, as :func:`~.transcode.transcode` numbers them) and attach the faces. Meant for
        another thread (``transcode(prepare=...)``), so detection overlaps restoration; the
        detector must then be used by that thread only."""
        if frame.index % self.options.detect_every:
            return frame
        with self._stage("detect"):
            return replace(frame, faces=tuple(self.detector.detect(frame.image)))

    def flush(self) -> list[Frame]:
        """Finish every held frame (the end of the video) and return them, in order."""
        if self._held and not self._held[-1].detected:
            self._detect(self._held[-1])  # the last frame closes the tracks' last interval
        return self._advance(final=True)

    # ------------------------------------------------------------------ feed / pull API
    def feed(self, image: np.ndarray | Frame, pts: int | None = None) -> None:
        """Queue a frame; restored frames become available to :meth:`pull`."""
        self._ready.extend(self.push(image, pts))

    def pull(self) -> Iterator[Frame]:
        """The restored frames available now, oldest first (all of them after :meth:`close`)."""
        while self._ready:
            yield self._ready.popleft()

    def close(self) -> None:
        """End of input: finishes the held frames (for :meth:`pull`); further feeding is an error."""
        if not self._closed:
            self._ready.extend(self.flush())
            self._closed = True

    def restore_frames(self, images: Iterable[np.ndarray | Frame]) -> Iterator[Frame]:
        """Generator: restored frames of ``images``, in order, as soon as each is finished."""
        for image in images:
            yield from self.push(image)
        yield from self.flush()
        self._closed = True

    def __enter__(self) -> "VideoRestorer":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:  # an error: drop what is held rather than restore it
            self._held.clear()
            self._batch.clear()
            self._closed = True

    # ------------------------------------------------------------------ steps
    def _detect(self, held: _Held) -> None:
        with self._stage("detect"):
            found = self.detector.detect(held.frame.image)
        self._track(held, found)

    def _track(self, held: _Held, found: list) -> None:
        with self._stage("track"):
            ids = self.tracker.update(held.frame.index, found)
            for tid, face in zip(ids, found):
                self.smoother.observe(tid, held.frame.index, face)
            self.tracks_seen = self.tracker.next_id
        held.detected = True

    def _advance(self, final: bool) -> list[Frame]:
        out: list[Frame] = []
        newest = self._count - 1
        while self._held and (final or self._held[0].frame.index <= newest - self.options.lookahead):
            held = self._held.popleft()
            with self._stage("track"):
                held.faces = self.smoother.faces_at(held.frame.index)
                self.smoother.forget_before(held.frame.index + 1)
            out += self._batch_up(held)
        if final:
            out += self._run_batch()
        return out

    def _batch_up(self, held: _Held) -> list[Frame]:
        """Add a planned frame to the batch; run the batch when it is full. A batch never exceeds
        ``batch_size`` faces (unless one frame alone has more), and a faceless frame with no faces
        batched before it goes out at once, so every run of faces starts a batch of its own (the
        engine then sees few distinct batch sizes: ONNX Runtime keeps memory per size)."""
        size = self.options.batch_size
        faces = sum(len(h.faces) for h in self._batch)
        out = []
        if self._batch and faces + len(held.faces) > size:
            out += self._run_batch()
            faces = 0
        self._batch.append(held)
        faces += len(held.faces)
        if faces >= size or len(self._batch) >= self._max_frames or not faces:
            out += self._run_batch()
        return out

    @property
    def _max_frames(self) -> int:
        """Frames per batch when they hold few faces: bounds memory and delay (faceless stretches)."""
        return max(self.options.batch_size, 4)

    def _seeds(self, held: _Held) -> list[int]:
        o = self.options
        if o.seed_mode is SeedMode.TRACK:
            return [track_seed(o.seed, tid) for tid, _ in held.faces]
        return [image_seed(o.seed, held.frame.index, 2 + j) for j in range(len(held.faces))]

    def _run_batch(self) -> list[Frame]:
        batch, self._batch = self._batch, []
        with_faces = [h for h in batch if h.faces]
        if with_faces:
            with self._stage("faces"):
                results = self.faces.restore_faces(
                    [h.frame.image for h in with_faces], [[f for _, f in h.faces] for h in with_faces],
                    [self._seeds(h) for h in with_faces])
            restored = {id(h): image for h, (image, _) in zip(with_faces, results)}
        else:
            restored = {}
        return [h.frame.with_image(restored.get(id(h), h.frame.image)) for h in batch]
