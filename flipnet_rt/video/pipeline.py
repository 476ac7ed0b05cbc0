# Long module: VideoRestorer's steps (detect, track, look back, batch, workers) share its frame queues.
"""Restore the faces of a video, frame by frame, with one noise seed per face track (DESIGN §7).

:class:`VideoRestorer` is a :class:`~.frames.FrameProcessor`: frames go in in order and come out
in order, restored, after a bounded delay.

1. detect faces in the whole frame every ``detect_every`` frames (and on the last frame); in the
   frames between, find each tracked face again near where its track predicts it
   (:mod:`.regions`, ``tracking="region"``, the default: a few percent of a full detection's cost)
   or interpolate its landmarks (``tracking="interpolate"``); a face first found by a full detection
   is looked for backwards, through the held frames since the previous one, so it does not pop in
   late;
2. track them (:class:`~.tracker.FaceTracker`): every track keeps one seed for its life
   (:func:`~.tracker.track_seed`), so a still face is sampled from the same noise in every frame
   and does not flicker;
3. once ``lookahead`` newer frames have been seen, smooth each track's landmarks around the frame
   and fill short misses (:class:`~.smoothing.TrackSmoother`);
4. gather frames until their faces fill ``batch_size``, restore all those faces in one core
   batch and paste them back (:meth:`flipnet_rt.faces.pipeline.FaceRestorer.restore_faces`);
   given several face restorers (engine workers), batches are restored concurrently, one per
   worker, and still come out in order.

Frames held at once: at most ``lookahead + 1`` waiting for look-ahead plus one batch per worker
and one filling, never more.
Three ways to use it: as a processor for :func:`~.transcode.transcode`; ``push``/``flush``;
or ``feed``/``pull`` (and ``restore_frames``, a generator), with ``close()`` or a ``with`` block.
"""

from __future__ import annotations

import logging
import queue
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from enum import Enum
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config.options import image_seed
from ..faces.retinaface import RetinaFaceDetector
from ..faces.types import BatchFaceDetector, NearFaceDetector
from ..runtime.profiling import StageTimer
from .frames import Frame
from .regions import find_near, refine
from .smoothing import TrackSmoother
from .stabilise import CropStabiliser, TrackCrops
from .tracker import FaceTracker, track_seed

if TYPE_CHECKING:
    from ..faces.pipeline import FaceRestorer
    from ..faces.types import Face, FaceDetector

log = logging.getLogger(__name__)


class Tracking(str, Enum):
    """How faces are followed between two full-frame detections."""

    REGION = "region"  # the detector, in a window around each tracked face (the default)
    INTERPOLATE = "interpolate"  # no detector: landmarks interpolated between the detections


class SeedMode(str, Enum):
    """Where each face's sampling noise comes from."""

    TRACK = "track"  # one seed per face track for its life: no flicker (the default)
    FRAME = "frame"  # a new seed per frame and face: what restoring frames one by one does (flickers)


@dataclass(frozen=True)
class VideoOptions:
    """How faces are found and batched across frames.

    batch_size: faces per engine call, gathered from consecutive frames (more: faster per face on
        a GPU and on the CPU up to ~4-8, at the cost of ``batch_size`` frames of latency and memory).
    detect_every: run the detector on the whole of every k-th frame only (the costly search for
        new faces); in between, faces are followed as ``tracking`` says. A face that appears and
        leaves between two full detections is missed.
    tracking: :class:`Tracking`: ``region`` detects each tracked face again near its predicted
        place in every frame between; ``interpolate`` interpolates landmarks between full
        detections (cheapest; fast motion is followed less closely).
    lookahead: frames seen past a frame before its faces are smoothed (>= detect_every with
        ``interpolate``; with ``region``, a face first found by a full detection is followed back
        through at most this many frames).
    smoothing: Gaussian width, in frames, of the landmark smoothing (0: off).
    max_gap: longest run of frames without a detection filled by interpolation (misses, and the
        frames between detections when detect_every > 1).
    seed: base seed; seed_mode: :class:`SeedMode`.
    detect_batch: full-frame searches run together in one detector call (a detector with
        ``detect_batch``, e.g. RetinaFace; others search frame by frame): frames wait, undetected,
        until this many searches are due (memory: up to ``detect_batch * detect_every`` more
        frames); worth it where the detector runs on a GPU, not on the CPU (docs/studies/detector).
    stabilise: filter what the output takes from the input (the fidelity blend, keep-detail's band)
        along each track (:mod:`.stabilise`): the faces' input crops, not their per-frame noise (on
        the device frame path on the GPU, with one engine worker: the filter needs frame order).
    """

    batch_size: int = 8
    detect_every: int = 10
    tracking: Tracking = Tracking.REGION
    lookahead: int = 10
    smoothing: float = 2.0
    max_gap: int = 3
    seed: int = 0
    seed_mode: SeedMode = SeedMode.TRACK
    stabilise: bool = True
    detect_batch: int = 1

    def __post_init__(self) -> None:
        for name, kind in (("seed_mode", SeedMode), ("tracking", Tracking)):
            try:
                object.__setattr__(self, name, kind(getattr(self, name)))
            except ValueError:
                raise ValueError(
                    f"{name}: {getattr(self, name)!r} is not one of {', '.join(k.value for k in kind)}"
                ) from None
        # errors name the field; the command line shows its flag (cli/flags.py's usage_message)
        if self.batch_size < 1:
            raise ValueError(f"batch_size: {self.batch_size}; must be 1 or more")
        if self.detect_every < 1:
            raise ValueError(f"detect_every: {self.detect_every}; must be 1 or more")
        if self.detect_batch < 1:
            raise ValueError(f"detect_batch: {self.detect_batch}; must be 1 or more")
        if self.lookahead < self.detect_every and self.tracking is Tracking.INTERPOLATE:
            raise ValueError(
                f"lookahead: {self.lookahead}; must be at least detect_every "
                f"({self.detect_every}) with tracking interpolate, so the next detection is "
                f"seen before a frame is finished"
            )
        if self.smoothing < 0:
            raise ValueError(f"smoothing: {self.smoothing}; must be 0 (off) or more frames")

    @property
    def gap(self) -> int:
        """Gaps filled: ``max_gap`` or the frames between two detections, whichever is longer."""
        return min(max(self.max_gap, self.detect_every - 1), self.lookahead)


@dataclass
class _Held:
    frame: Frame
    faces: list = field(default_factory=list)  # [(track id, Face)], filled once planned
    detected: bool = False
    # each face's input crop filtered along its track (stabilise), once planned
    aligned: list[np.ndarray | None] | None = None
    uploaded: Any = None  # the frame on the engine's device, when it was detected there (one worker)


class VideoRestorer:
    """Restores the faces of a stream of frames (see the module's docstring).

    Args:
        faces: a :class:`flipnet_rt.faces.pipeline.FaceRestorer` (its options, e.g.
            ``min_face_size`` or ``max_faces``, apply to every frame), or several alike, each on
            its own backend (a backend runs one call at a time): engine workers that restore
            batches concurrently (on the CPU, two single-threaded workers restored 1.6-1.8x the
            faces per second of one two-threaded one; on a GPU one worker with larger batches is better).
        options: :class:`VideoOptions`.
        detector: a :class:`~flipnet_rt.faces.types.FaceDetector` (default: ``faces.detector``).
        near_detector: what finds tracked faces near their predicted boxes (``tracking="region"``)
            and refines a full search's faces: ``detector`` when it has a ``detect_near`` of its own
            (MTCNN), else MTCNN on the CPU. MTCNN's last two stages measured better than RetinaFace
            on a window around each face (2 faces a frame, a still face under fresh noise: 4.8 vs
            35 ms a frame at 720p, 6.0 vs 73 ms at 1080p; landmark jitter 0.06 vs 0.14-0.22 px), so
            a RetinaFace search is followed, and its faces refined, by MTCNN: a track's landmarks
            all come from one detector.
        timer: records busy time of ``detect``, ``track`` and ``faces`` (align + restore + paste).
    """

    def __init__(
        self,
        faces: FaceRestorer | Sequence[FaceRestorer],
        options: VideoOptions | None = None,
        *,
        detector: FaceDetector | None = None,
        near_detector: FaceDetector | None = None,
        timer: StageTimer | None = None,
    ) -> None:
        self.workers = list(faces) if isinstance(faces, Sequence) else [faces]
        if not self.workers:
            raise ValueError("faces: give at least one face restorer")
        self.faces = self.workers[0]
        self.options = options or VideoOptions()
        self.detector = detector if detector is not None else self.faces.detector
        self._near = near_detector
        self.timer = timer
        o = self.options
        self.tracker = FaceTracker(max_age=max(o.lookahead, 2 * o.detect_every))
        self.smoother = TrackSmoother(window=o.lookahead, sigma=o.smoothing, max_gap=o.gap)
        # the filter runs in frame order: here for the host frame path (crops made on this thread);
        # in the one engine worker for the device path, where the crops and means stay on the GPU
        self.stabiliser = CropStabiliser(max_age=self.tracker.max_age) if o.stabilise else None
        self._stabilise_on_device = self.stabiliser is not None and self.faces.device_frames is not None
        if self._stabilise_on_device and len(self.workers) > 1:
            log.warning(
                "stabilise: the device frame path filters the face crops in frame order, which %d engine "
                "workers do not keep; not filtered (use --workers 1)",
                len(self.workers),
            )
            self.stabiliser, self._stabilise_on_device = None, False
        self._held: deque[_Held] = deque()  # decoded, waiting for look-ahead
        # decoded, waiting for a batch of full-frame searches (options.detect_batch), not yet in _held
        self._pending: list[_Held] = []
        self._batch_detector = self.detector if isinstance(self.detector, BatchFaceDetector) else None
        # one worker on the device frame path with RetinaFace on its engine: frames are uploaded to be
        # searched and restored from the same upload (faces/device.py DeviceFrames.detect)
        self._detects_on_device = (
            len(self.workers) == 1
            and self.faces.device_frames is not None
            and self.faces.detects_on_device(self.detector)
        )
        self._batch: list[_Held] = []  # planned, waiting for the batch to fill
        self._ready: deque[Frame] = deque()  # restored, for pull()
        self._running: deque[tuple[list[_Held], Future]] = deque()  # batches on the workers, in order
        self._pool: ThreadPoolExecutor | None = None
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
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
            raise ValueError(
                f"frame {self._count}: expected a uint8 [H, W, 3] RGB image, got {image.dtype} {image.shape}"
            )
        ahead = frame.faces
        frame = Frame(self._count, frame.pts, frame.time_base, image)  # our own index: the tracker's clock
        self._count += 1
        held = _Held(frame)
        if ahead is None and self.options.detect_batch > 1 and self._batch_detector is not None:
            self._pending.append(held)
            due = sum(1 for h in self._pending if self._due(h))
            return self._run_pending() if due >= self.options.detect_batch else []
        self._held.append(held)
        if ahead is not None:
            self._track(held, list(ahead), full=True)
        elif self._due(held):
            self._detect(held)
        elif self.options.tracking is Tracking.REGION:
            self._detect_near(held)
        return self._advance(final=False)

    @property
    def near_detector(self) -> FaceDetector:
        """The detector of region tracking and refinement (see the class doc), made on first use."""
        if self._near is None:
            if isinstance(self.detector, NearFaceDetector):
                self._near = self.detector
            else:
                from ..faces.detectors import DetectorKind, load_detector

                self._near = load_detector(DetectorKind.MTCNN)
        return self._near

    def _due(self, held: _Held) -> bool:
        """Whether ``held`` is a frame whose whole is searched (every ``detect_every``-th)."""
        return held.frame.index % self.options.detect_every == 0

    def _run_pending(self) -> list[Frame]:
        """The waiting frames' full-frame searches in one detector call, then each frame in order as
        :meth:`push` takes it (tracked, or followed near its tracks); returns the frames finished."""
        pending, self._pending = self._pending, []
        due = [h for h in pending if self._due(h)]
        found: dict[int, list[Face]] = {}
        if due:
            with self._stage("detect"):
                found = {h.frame.index: faces for h, faces in zip(due, self._search(due))}
        out: list[Frame] = []
        for held in pending:
            self._held.append(held)
            if held.frame.index in found:
                self._track(held, found[held.frame.index], full=True)
            elif self.options.tracking is Tracking.REGION:
                self._detect_near(held)
            out += self._advance(final=False, newest=held.frame.index)
        return out

    def detect_ahead(self, frame: Frame) -> Frame:
        """Run the detector on ``frame`` if it is a detection frame (its ``index`` counts from 0 with
        no gaps, as :func:`~.transcode.transcode` numbers them) and attach the faces. Meant for
        another thread (``transcode(prepare=...)``), so detection overlaps restoration. With
        ``tracking="region"`` the caller's thread calls the detector too, so it must be safe to call
        from two threads (MTCNN is: ONNX Runtime sessions are)."""
        if frame.index % self.options.detect_every:
            return frame
        with self._stage("detect"):
            return replace(frame, faces=tuple(self.detector.detect(frame.image)))

    def flush(self) -> list[Frame]:
        """Finish every held frame (the end of the video) and return them, in order."""
        out = self._run_pending() if self._pending else []
        if self._held and not self._held[-1].detected:
            self._detect(self._held[-1])  # the last frame closes the tracks' last interval
        return out + self._advance(final=True)

    # ------------------------------------------------------------------ feed / pull API
    def feed(self, image: np.ndarray | Frame, pts: int | None = None) -> None:
        """Queue a frame; restored frames become available to :meth:`pull`."""
        self._ready.extend(self.push(image, pts))

    def pull(self) -> Iterator[Frame]:
        """The restored frames available now, oldest first (all of them after :meth:`close`);
        with several workers, batches finished since the last call are collected here too."""
        self._ready.extend(self._finished(wait_all=False))
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

    def __enter__(self) -> VideoRestorer:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:  # an error: drop what is held rather than restore it
            self._held.clear()
            self._batch.clear()
            self._shutdown(cancel=True)
            self._closed = True

    # ------------------------------------------------------------------ steps
    def _detect(self, held: _Held) -> None:
        with self._stage("detect"):
            (found,) = self._search([held])
        self._track(held, found, full=True)

    def _search(self, due: list[_Held]) -> list[list[Face]]:
        """Full-frame searches of ``due`` (one detector call): on the device frame path the frames are
        uploaded here and keep their uploads for the restore."""
        images = [h.frame.image for h in due]
        if self._detects_on_device:
            assert self.faces.device_frames is not None and isinstance(self.detector, RetinaFaceDetector)
            found, uploads = self.faces.device_frames.detect(images, self.detector)
            for held, upload in zip(due, uploads):
                held.uploaded = upload
            return found
        if len(due) == 1:
            return [self.detector.detect(images[0])]
        assert self._batch_detector is not None, "several frames are searched together only by a batch detector"
        return self._batch_detector.detect_batch(images)

    def _detect_near(self, held: _Held) -> None:
        """Each recently seen track's face, looked for near its predicted box; a face found there
        continues that track."""
        predicted = self.tracker.predicted(held.frame.index, within=self.options.gap + 1)
        pairs = []
        if predicted:
            with self._stage("detect"):
                found = find_near(self.near_detector, held.frame.image, [box for _, box in predicted])
            pairs = [(tid, face) for (tid, _), face in zip(predicted, found) if face is not None]
        self._track(held, [face for _, face in pairs], known=[tid for tid, _ in pairs])

    def _track(self, held: _Held, found: list, full: bool = False, known: list | None = None) -> None:
        first_new = self.tracker.next_id
        if full and found and self.options.tracking is Tracking.REGION:
            with self._stage("detect"):
                found = refine(self.near_detector, held.frame.image, found)
        with self._stage("track"):
            ids = self.tracker.update(held.frame.index, found, known)
            for tid, face in zip(ids, found):
                self.smoother.observe(tid, held.frame.index, face)
            self.tracks_seen = self.tracker.next_id
        held.detected = True
        if full and self.options.tracking is Tracking.REGION:
            for tid, face in zip(ids, found):
                if tid >= first_new:
                    self._look_back(tid, face)

    def _look_back(self, track_id: int, face) -> None:
        """Follow a face found by a full detection backwards through the frames held since the
        previous full detection (all still held: ``lookahead >= detect_every``), until it is lost."""
        earlier = list(self._held)[-self.options.detect_every : -1]
        box = face.box
        for held in reversed(earlier):
            with self._stage("detect"):
                (match,) = find_near(self.near_detector, held.frame.image, [box])
            if match is None:
                return
            self.smoother.observe(track_id, held.frame.index, match)
            box = match.box

    def _advance(self, final: bool, newest: int | None = None) -> list[Frame]:
        """Finish the held frames ``lookahead`` frames older than ``newest`` (default: the newest pushed)."""
        out: list[Frame] = []
        newest = self._count - 1 if newest is None else newest
        while self._held and (final or self._held[0].frame.index <= newest - self.options.lookahead):
            held = self._held.popleft()
            with self._stage("track"):
                held.faces = self.smoother.faces_at(held.frame.index)
                self.smoother.forget_before(held.frame.index + 1)
            if self.stabiliser is not None and not self._stabilise_on_device and held.faces:  # in frame order
                with self._stage("stabilise"):
                    held.aligned = [self._stable_crop(held, tid, face) for tid, face in held.faces]
            out += self._batch_up(held)
        if final:
            out += self._run_batch()
            out += self._finished(wait_all=True)
            self._shutdown()
        return out

    def _stable_crop(self, held: _Held, track: int, face: Face) -> np.ndarray | None:
        assert self.stabiliser is not None, "called only to stabilise"
        crop = self.faces.aligned_crop(held.frame.image, face)
        return None if crop is None else self.stabiliser(track, crop, held.frame.index)

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
        """Restore the gathered batch: here with one worker; else on a free worker's thread, and
        return the batches finished by then, in order (waiting for the oldest when every worker
        is busy, which bounds the frames in flight)."""
        batch, self._batch = self._batch, []
        if len(self.workers) == 1:
            return self._restore(self.faces, batch)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self.workers), thread_name_prefix="flipnet-restore")
            for worker in self.workers:
                self._idle.put(worker)
        self._running.append((batch, self._pool.submit(self._on_worker, batch)))
        return self._finished(wait_all=False)

    def _on_worker(self, batch: list[_Held]) -> list[Frame]:
        worker = self._idle.get()  # one is free: the pool has one thread per worker
        try:
            return self._restore(worker, batch)
        finally:
            self._idle.put(worker)

    def _finished(self, wait_all: bool) -> list[Frame]:
        out: list[Frame] = []
        while self._running and (wait_all or len(self._running) > len(self.workers) or self._running[0][1].done()):
            out += self._running.popleft()[1].result()
        return out

    def _shutdown(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None
            self._idle = queue.SimpleQueue()
        self._running.clear()

    def _restore(self, faces: FaceRestorer, batch: list[_Held]) -> list[Frame]:
        with_faces = [h for h in batch if h.faces]
        if with_faces:
            with self._stage("faces"):
                aligned: list[list[np.ndarray | None]] | None = None
                tracks: TrackCrops | None = None
                if self._stabilise_on_device:  # one worker: batches come here in frame order
                    assert self.stabiliser is not None, "on the device only to stabilise"
                    tracks = TrackCrops(
                        self.stabiliser,
                        [[tid for tid, _ in h.faces] for h in with_faces],
                        [h.frame.index for h in with_faces],
                    )
                elif self.stabiliser is not None:
                    aligned = [h.aligned for h in with_faces if h.aligned is not None]
                    assert len(aligned) == len(with_faces), "_advance cropped every frame with faces"
                uploaded = [h.uploaded for h in with_faces]
                device = {"uploaded": uploaded} if any(u is not None for u in uploaded) else {}  # only with uploads
                results = faces.restore_faces(
                    [h.frame.image for h in with_faces],
                    [[f for _, f in h.faces] for h in with_faces],
                    [self._seeds(h) for h in with_faces],
                    aligned=aligned,
                    tracks=tracks,
                    **device,
                )
            restored = {id(h): image for h, (image, _) in zip(with_faces, results)}
        else:
            restored = {}
        for held in batch:
            held.uploaded = None  # the device memory goes with the batch
        return [h.frame.with_image(restored.get(id(h), h.frame.image)) for h in batch]
