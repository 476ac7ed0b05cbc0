"""Clips generated with PyAV for the video tests: H.264 video + a sine AAC track, CFR or VFR.

Imported by the tests as ``video.clips`` (tests/ is on pytest's pythonpath)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

import av

TIME_BASE = Fraction(1, 90000)


def gradient(width: int, height: int, i: int) -> np.ndarray:
    """A moving colour gradient ``[H, W, 3]`` uint8: smooth, so the encoder keeps it well."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = (xx / max(width - 1, 1) * 200 + 3 * i) % 256
    g = yy / max(height - 1, 1) * 200 + 20
    b = np.full_like(xx, 40 + (i * 5) % 150)
    return np.stack([r, g, b], -1).astype(np.uint8)


def cfr_pts(n: int, fps: int = 25) -> list[int]:
    step = int(1 / (fps * TIME_BASE))
    return [i * step for i in range(n)]


def vfr_pts(n: int) -> list[int]:
    """Irregular gaps (40, 100, 33.3, 60 ms...): what phones and screen recorders write."""
    gaps_ms = [40, 100, 33.3, 60, 40, 41.7, 200, 16.7]
    pts, t = [], 0
    for i in range(n):
        pts.append(t)
        t += round(gaps_ms[i % len(gaps_ms)] / 1000 / TIME_BASE)
    return pts


def write_clip(path: Path, pts: Iterable[int], *, size: tuple[int, int] = (96, 64),
               frame: Callable[[int], np.ndarray] | None = None, audio: bool = True,
               colour: dict[str, int] | None = None, options: dict[str, str] | None = None) -> Path:
    """An H.264 (ultrafast) clip at ``pts`` (1/90000 s) with a 440 Hz AAC mono track as long as the video."""
    width, height = size
    pts = list(pts)
    frame = frame or (lambda i: gradient(width, height, i))
    with av.open(str(path), "w", options=options or {}) as out:
        video = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "12"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = TIME_BASE
        video.codec_context.time_base = TIME_BASE
        for key, value in (colour or {}).items():
            setattr(video.codec_context, key, value)
        sound = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i, p in enumerate(pts):
            f = av.VideoFrame.from_ndarray(frame(i), format="rgb24")
            if colour:
                f.colorspace = colour.get("colorspace", 2)
                f = f.reformat(format="yuv420p", dst_color_range=colour.get("color_range") or None)
            f.pts, f.time_base = p, TIME_BASE
            for packet in video.encode(f):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            rate, seconds = 16000, float((pts[-1] + round(0.04 / TIME_BASE)) * TIME_BASE)
            n = int(seconds * rate)
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)[None]
            for s in range(0, n, 1024):
                a = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, s:s + 1024]), format="flt", layout="mono")
                a.sample_rate, a.pts = rate, s
                for packet in sound.encode(a):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return path


def frame_times(path: Path) -> list[Fraction]:
    """Every decoded video frame's exact presentation time (pts x time base), in order."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return [f.pts * v.time_base for f in c.decode(v)]


def stream_packets(path: Path, kind: str = "audio") -> list[tuple[Fraction | None, bytes]]:
    """(time, payload bytes) of every packet of the first ``kind`` stream."""
    with av.open(str(path)) as c:
        s = getattr(c.streams, kind)[0]
        return [(None if p.pts is None else p.pts * p.time_base, bytes(p)) for p in c.demux(s) if p.size]


def require(ok: bool, what: str) -> None:
    """Skip when ``what`` is missing on a developer machine; fail under CI=true (CI must have it)."""
    import os

    import pytest

    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is missing and CI=true: CI must provide it")
    pytest.skip(f"{what} is missing")


def astronaut_face(eye_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """The (public-domain) astronaut's head from scikit-image, scaled so its eyes are
    ``eye_distance`` px apart: ``(uint8 [S, S, 3], its 5 landmarks float32 [5, 2])``."""
    from PIL import Image
    from skimage import data

    marks = np.array([[203.5, 101.4], [246.5, 103.7], [224.6, 128.2], [201.4, 139.4], [245.5, 141.5]], np.float32)
    x0, y0, side = 135, 30, 180  # a square around the head
    scale = eye_distance / float(np.linalg.norm(marks[1] - marks[0]))
    size = round(side * scale)
    crop = Image.fromarray(data.astronaut()[y0:y0 + side, x0:x0 + side]).resize((size, size), Image.LANCZOS)
    return np.asarray(crop), (marks - [x0, y0]) * scale


def static_face_frames(n: int, *, size: tuple[int, int] = (256, 192), eye_distance: float = 24.0,
                       noise: float = 4.0, faces: int = 1, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` frames of a still scene with ``faces`` astronaut heads plus fresh Gaussian sensor noise
    (``noise`` grey levels) in every frame; returns (frames, each head's [x0, y0, x1, y1] box)."""
    width, height = size
    head, _ = astronaut_face(eye_distance)
    s = head.shape[0]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    scene = np.stack([60 + 80 * xx / width, 90 + 40 * yy / height, np.full_like(xx, 110)], -1)
    boxes = []
    for k in range(faces):
        x = int((k + 0.5) * width / faces - s / 2)
        y = int(height / 2 - s / 2)
        scene[y:y + s, x:x + s] = head
        boxes.append(np.array([x, y, x + s, y + s]))
    rng = np.random.default_rng(seed)
    frames = [np.clip(scene + rng.normal(0, noise, scene.shape), 0, 255).round().astype(np.uint8) for _ in range(n)]
    return frames, boxes


def flicker(frames: list[np.ndarray], box: np.ndarray) -> float:
    """Mean |frame[t+1] - frame[t]| inside ``box`` (grey levels, all channels)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    crops = np.stack([f[y0:y1, x0:x1].astype(np.float32) for f in frames])
    return float(np.abs(np.diff(crops, axis=0)).mean())
