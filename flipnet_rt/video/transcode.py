"""Decode → process → encode in three overlapping stages joined by bounded queues.

    decoder thread ─[queue]─▶ (prepare thread ─[queue]─▶) caller's thread: FrameProcessor ─[queue]─▶ encoder thread

The decoder thread demuxes and decodes (frames to RGB arrays) and passes copied-stream packets
along in file order; an optional prepare thread runs a per-frame function ahead (face detection:
``VideoRestorer.detect_ahead``); the calling thread runs the processor (restoration); the
encoder thread converts, encodes and muxes. Memory is bounded by the two queue depths plus the
processor's own window, never by the video's length. Packets of the copied streams travel with
the frames: one that was read after frame i is written after output frame i, so the muxer's
interleaving buffer stays small too.

Any error in any stage stops all three, deletes the partial output and is raised in the caller;
so does Ctrl-C. The output file appears, complete, only at the end (:mod:`.sink`).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime.profiling import StageTimer
from .encoding import EncoderOptions
from .frames import Frame, FrameProcessor
from .sink import VideoSink
from .source import VideoSource

log = logging.getLogger(__name__)

_END = object()
_POLL_S = 0.1


@dataclass
class TranscodeReport:
    """What a run did: frames and packets written, wall time, and busy seconds per stage."""

    output: Path
    frames: int
    packets: int
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


class _Stopped(Exception):
    """Raised inside a stage when another stage failed or the run was interrupted."""


class _Channel:
    """A bounded queue whose put/get give up as soon as the run is stopped."""

    def __init__(self, depth: int, stop: threading.Event) -> None:
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = stop

    def put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        raise _Stopped

    def get(self):
        while not self.stop.is_set():
            try:
                return self.q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        raise _Stopped


def transcode(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    processor: FrameProcessor,
    *,
    encoder: EncoderOptions | None = None,
    start: float | None = None,
    duration: float | None = None,
    queue_depth: int = 8,
    timer: StageTimer | None = None,
    progress: bool | None = False,
    on_frame: Callable[[int], None] | None = None,
    prepare: Callable[[Frame], Frame] | None = None,
) -> TranscodeReport:
    """Run ``processor`` over every frame of ``source`` and write ``destination``.

    encoder: how the video is encoded (default: libx264, crf 18, yuv420p, the input's colours).
    start, duration: seconds; only that range is written, its timestamps shifted to begin at 0.
    queue_depth: frames held between stages (memory ~ 2 x depth frames + the processor's window).
    timer: receives ``decode``/``encode`` busy time (the processor records its own stages); for a
        long video give ``StageTimer(keep=False)`` (totals only, constant size).
    progress: a tqdm bar on stderr (frames/s, ETA); None = only when stderr is a terminal.
    on_frame: called with the count of frames written so far, after each (tests, memory probes).
    prepare: run on every frame, in order, in a thread of its own before the processor (e.g.
        ``VideoRestorer.detect_ahead``, so that detection overlaps restoration).
    Raises :class:`~.errors.VideoError` (bad input or output; nothing written) or whatever the
    processor raised.
    """
    encoder = encoder or EncoderOptions()
    if queue_depth < 1:
        raise ValueError(f"queue_depth {queue_depth}: must be 1 or more")
    destination = Path(destination)
    src = VideoSource(source, start=start, duration=duration).open()
    stage = timer.stage if timer is not None else (lambda name: nullcontext())
    stop = threading.Event()
    failures: list[BaseException] = []
    decoded, to_encode = _Channel(queue_depth, stop), _Channel(queue_depth, stop)
    prepared = _Channel(queue_depth, stop) if prepare is not None else decoded
    began = time.perf_counter()
    try:
        sink = VideoSink(destination, src, encoder).open()
    except BaseException:
        src.close()
        raise

    def guarded(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except _Stopped:
                pass
            except BaseException as exc:  # handed to the caller's thread, which raises it
                failures.append(exc)
                stop.set()

        return run

    def decode() -> None:
        items = src.items()
        while True:
            with stage("decode"):
                item = next(items, _END)
            decoded.put(item)
            if item is _END:
                return

    def prep() -> None:
        assert prepare is not None, "started only with a prepare"
        while (item := decoded.get()) is not _END:
            prepared.put(prepare(item) if isinstance(item, Frame) else item)
        prepared.put(_END)

    def encode() -> None:
        while (item := to_encode.get()) is not _END:
            with stage("encode"):
                if isinstance(item, Frame):
                    sink.write_frame(item)
                    if on_frame is not None:
                        on_frame(sink.frames)
                else:
                    sink.write_packet(item)
        with stage("encode"):
            sink.commit()

    threads = [
        threading.Thread(target=guarded(decode), name="flipnet-decode", daemon=True),
        threading.Thread(target=guarded(encode), name="flipnet-encode", daemon=True),
    ]
    if prepare is not None:
        threads.append(threading.Thread(target=guarded(prep), name="flipnet-prepare", daemon=True))
    from tqdm import tqdm

    assert src.info is not None, "opened above"
    bar = tqdm(
        total=src.info.frames,
        desc="video",
        unit="frame",
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
    )
    try:
        for t in threads:
            t.start()
        _process(prepared, to_encode, processor, bar)
        while threads[1].is_alive():  # the encoder commits after the end marker
            threads[1].join(_POLL_S)
    except _Stopped:
        pass
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        for t in threads:
            t.join()
        bar.close()
        src.close()
        if failures or sink.container is not None:
            sink.abort()
    if failures:
        raise failures[0]
    return TranscodeReport(
        destination,
        sink.frames,
        sink.packets,
        time.perf_counter() - began,
        dict(timer.totals()) if timer is not None else {},
    )


def _process(decoded: _Channel, to_encode: _Channel, processor: FrameProcessor, bar) -> None:
    """The caller's stage: frames through the processor, packets held until their frame is out."""
    pending: deque[tuple[int, object]] = deque()  # (frames read before the packet, packet)
    pushed = emitted = 0

    def emit(frames: list[Frame]) -> None:
        nonlocal emitted
        for frame in frames:
            to_encode.put(frame)
            emitted += 1
            bar.update(1)
            while pending and pending[0][0] <= emitted:
                to_encode.put(pending.popleft()[1])

    while (item := decoded.get()) is not _END:
        if isinstance(item, Frame):
            pushed += 1
            emit(processor.push(item))
        elif pushed <= emitted:
            to_encode.put(item)
        else:
            pending.append((pushed, item))
    emit(processor.flush())
    if emitted != pushed:
        raise RuntimeError(f"the frame processor returned {emitted} frames for {pushed}; it must return each once")
    while pending:
        to_encode.put(pending.popleft()[1])
    to_encode.put(_END)
