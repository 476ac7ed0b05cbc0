"""``flipnet-rt video IN -o OUT``: restore every face of a video (see :mod:`flipnet_rt.video`).

Needs the ``video`` extra (PyAV). The audio, subtitle and data streams are copied untouched, the
timestamps are the input's, and OUT appears only when complete. Exit status: 0 written, 1 the
input could not be restored (one line on stderr, nothing written), 2 a usage error, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from ..faces.types import FramePath
from ..video.pipeline import SeedMode, Tracking
from .faces import DETECTOR_FIELDS, build_face_restorer, face_args
from .flags import choices, usage_message


def add_parser(sub: argparse._SubParsersAction, run_args) -> None:
    p = sub.add_parser("video", help="restore the faces of a video (audio copied, timestamps kept, no flicker)")
    p.add_argument("input", type=Path, metavar="IN", help="a video file FFmpeg reads (mp4, mkv, mov, webm, avi...)")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="OUT",
        help="the output video; its extension picks the container (.mp4, .mkv, .mov)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (never IN)")
    run_args(p)
    video_args(p)


def video_args(p: argparse.ArgumentParser) -> None:
    """The face, temporal and encoding options (video, cluster video), after ``run_args``."""
    p.set_defaults(batch_size=8)
    face_args(p)
    t = p.add_argument_group("temporal consistency")
    t.add_argument(
        "--detect-every",
        type=int,
        default=10,
        metavar="K",
        help="search the whole frame for faces every K frames (default 10; 1: every frame); "
        "between, faces are followed as --tracking says. A face visible for less than K "
        "frames can be missed",
    )
    t.add_argument(
        "--detect-batch",
        type=int,
        default=1,
        metavar="N",
        help="run N full-frame searches in one detector call (retinaface; frames wait for it: "
        "memory N x K frames); for a detector on a GPU (default 1)",
    )
    t.add_argument(
        "--tracking",
        choices=choices(Tracking),
        default="region",
        help="between full-frame searches: region: detect each tracked face again in a window "
        "around it, every frame (default); interpolate: interpolate its landmarks "
        "(cheapest; needs --lookahead >= K)",
    )
    t.add_argument(
        "--lookahead",
        type=int,
        default=10,
        metavar="N",
        help="frames seen ahead before a frame's landmarks are smoothed (memory: N frames)",
    )
    t.add_argument(
        "--smoothing", type=float, default=2.0, metavar="SIGMA", help="landmark smoothing width in frames (0: off)"
    )
    t.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="engine workers restoring batches concurrently, each with its own copy of the model "
        "(0, the default: two single-threaded ones on ONNX Runtime CPU with 2+ cores, else one)",
    )
    t.add_argument(
        "--frame-path",
        choices=choices(FramePath),
        default="auto",
        help="where the warp, colour fix and paste run: device: on the engine's device, each frame "
        "uploaded once and downloaded once (GPU backends with the native CUDA kernels; faces "
        "larger than the model's resolution still go the host way); host: on the CPU; auto "
        "(default): device on a GPU backend where it can run, else host",
    )
    t.add_argument(
        "--detect-thread",
        action="store_true",
        help="run the detector in its own thread, overlapping restoration (helps where cores are "
        "spare or the restorer is on a GPU; on 2 shared CPU cores it measured slower)",
    )
    t.add_argument(
        "--seed-mode",
        choices=choices(SeedMode),
        default="track",
        help="track: one noise seed per face track (no flicker; default); frame: a new seed "
        "every frame, as restoring frames one by one would (flickers)",
    )
    t.add_argument(
        "--no-stabilise",
        dest="stabilise",
        action="store_false",
        help="take each frame's own face crop as the input of the fidelity blend and keep-detail "
        "(default: the crops filtered along each face track, so the input's per-frame noise "
        "does not come back; on the device frame path with one engine worker)",
    )
    e = p.add_argument_group("output encoding (other streams are copied, never re-encoded)")
    e.add_argument(
        "--codec",
        default="libx264",
        help="video encoder: libx264, libx265, libvpx-vp9, libaom-av1, h264_nvenc... (default libx264)",
    )
    e.add_argument("--crf", type=int, default=18, help="constant quality: lower is better and larger (default 18)")
    e.add_argument(
        "--preset",
        default="medium",
        help="x264/x265/NVENC speed preset: slower presets make smaller files at the same quality",
    )
    e.add_argument(
        "--pix-fmt",
        default="auto",
        help="encoded pixel format; auto (default): the input's bit depth and chroma where the encoder "
        "takes them (an 8-bit 4:2:0 input stays yuv420p, which plays everywhere)",
    )
    e.add_argument("--encoder-threads", type=int, default=0, metavar="N", help="encoder threads (0: FFmpeg decides)")
    e.add_argument("--start", type=float, metavar="SECONDS", help="begin at this time (the output starts at 0)")
    e.add_argument("--duration", type=float, metavar="SECONDS", help="write this many seconds")
    e.add_argument(
        "--queue-depth",
        type=int,
        default=8,
        metavar="N",
        help="frames queued between decode, restore and encode (memory: 2 N frames)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        from ..video.encoding import EncoderOptions
        from ..video.errors import VideoError
        from ..video.pipeline import VideoOptions
        from ..video.source import VideoSource
    except ImportError as exc:  # pragma: no cover - only without the extra
        print(f"error: video needs PyAV ({exc.name} missing): pip install 'flipnet-rt[video]'", file=sys.stderr)
        return 2
    try:
        encoder, options = _options(args, EncoderOptions, VideoOptions)
    except ValueError as exc:
        fields = [f.name for options in (VideoOptions, EncoderOptions) for f in dataclasses.fields(options)]
        print(f"error: {usage_message(exc, fields)}", file=sys.stderr)
        return 2
    try:  # a bad input costs one line and no model load
        VideoSource(args.input, start=args.start, duration=args.duration).open().close()
    except VideoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return _restore(args, encoder, options)


def _options(args: argparse.Namespace, EncoderOptions, VideoOptions):
    """Check everything the command line can check before any work; ValueError -> exit 2."""
    if not args.model:
        raise ValueError("no model: pass --model DIR (an engine or model directory) or random:CONFIG")
    out, src = args.output, args.input
    if src.exists() and out.exists() and out.resolve() == src.resolve():
        raise ValueError(f"-o {out}: is the input; give another file name")
    if out.exists() and not args.overwrite:
        raise ValueError(f"-o {out}: exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise ValueError(f"-o {out}: no folder {out.parent}; create it first")
    if not out.suffix:
        raise ValueError(f"-o {out}: give an extension (.mp4, .mkv, .mov) so the container is known")
    return video_options(args, EncoderOptions, VideoOptions)


def video_options(args: argparse.Namespace, EncoderOptions, VideoOptions):
    """The encoder and video options of the command line (video, cluster video); ValueError -> exit 2."""
    if args.workers < 0:
        raise ValueError(f"--workers {args.workers}: must be 0 (automatic) or more")
    if args.queue_depth < 1:
        raise ValueError(f"--queue-depth {args.queue_depth}: must be 1 or more")
    if args.start is not None and args.start < 0 or args.duration is not None and args.duration <= 0:
        raise ValueError("--start must be >= 0 and --duration > 0 seconds")
    encoder = EncoderOptions(
        codec=args.codec, crf=args.crf, preset=args.preset or None, pix_fmt=args.pix_fmt, threads=args.encoder_threads
    )
    options = VideoOptions(
        batch_size=args.batch_size,
        detect_every=args.detect_every,
        detect_batch=args.detect_batch,
        tracking=args.tracking,
        lookahead=args.lookahead,
        smoothing=args.smoothing,
        seed=args.seed,
        seed_mode=args.seed_mode,
        stabilise=args.stabilise,
    )
    return encoder, options


def _restore(args: argparse.Namespace, encoder, options) -> int:
    from ..video.errors import VideoError
    from ..video.pipeline import VideoRestorer
    from ..video.transcode import transcode
    from .jobs import UsageError, load_restorer

    try:
        workers = _workers(args, *load_restorer(args))
    except (UsageError, ValueError, FileNotFoundError, ImportError) as exc:
        print(f"error: {usage_message(exc, DETECTOR_FIELDS)}", file=sys.stderr)
        return 2
    video = VideoRestorer(workers, options)
    try:
        report = transcode(
            args.input,
            args.output,
            video,
            encoder=encoder,
            start=args.start,
            duration=args.duration,
            queue_depth=args.queue_depth,
            progress=None,
            prepare=video.detect_ahead if args.detect_thread else None,
        )
    except VideoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; {args.output} was not written", file=sys.stderr)
        return 130
    finally:
        for worker in workers:
            worker.restorer.close()
    print(
        f"video: wrote {args.output} ({report.frames} frames, {report.packets} copied packets, "
        f"{video.tracks_seen} face tracks, {report.fps:.2f} frames/s)",
        file=sys.stderr,
    )
    return 0


def _workers(args: argparse.Namespace, restorer, sampling) -> list:
    """One face restorer per engine worker (``--workers``). Automatic: two on ONNX Runtime CPU with
    two or more cores, each with half the cores' threads (one call barely uses a second thread
    there), else one."""
    from .jobs import load_restorer

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cpu = restorer.backend.name == "onnxruntime"
    count = args.workers or (2 if cpu and cores >= 2 else 1)
    if count == 1:
        return [build_face_restorer(args, restorer, sampling, args.frame_path)]
    restorer.close()  # reloaded with the threads of a worker (ONNX Runtime opens sessions on first use)
    threads = max(1, cores // count) if cpu else None
    workers = []
    for _ in range(count):
        worker, worker_sampling = load_restorer(args, threads=threads)
        workers.append(build_face_restorer(args, worker, worker_sampling, args.frame_path))
    return workers
