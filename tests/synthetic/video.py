"""Generated clips for the tests, the benchmark and the memory check (no video files in the repo).

``write_clip`` encodes H.264 frames at given timestamps (constant or variable rate) with a sine AAC
track; ``face_scene`` draws a still scene holding the (public-domain) astronaut's head from
scikit-image (the ``demo`` extra) at a chosen eye distance, and ``noisy`` adds fresh sensor noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from flipnet_rt.imaging.scene import ASTRONAUT_LANDMARKS

TIME_BASE = Fraction(1, 90000)


def gradient(width: int, height: int, i: int) -> np.ndarray:
    """A moving colour gradient ``[H, W, 3]`` uint8: smooth, so the encoder keeps it well."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = (xx / max(width - 1, 1) * 200 + 3 * i) % 256
    g = yy / max(height - 1, 1) * 200 + 20
    b = np.full_like(xx, 40 + (i * 5) % 150)
    return np.stack([r, g, b], -1).astype(np.uint8)


def cfr_pts(n: int, fps: int = 25) -> list[int]:
    """Timestamps (1/90000 s) of ``n`` frames at a constant ``fps``."""
    step = int(1 / (fps * TIME_BASE))
    return [i * step for i in range(n)]


def vfr_pts(n: int) -> list[int]:
    """Irregular gaps (40, 100, 33.3, 60, 40, 41.7, 200, 16.7 ms): what phones and screen recorders write."""
    gaps_ms = [40, 100, 33.3, 60, 40, 41.7, 200, 16.7]
    pts, t = [], 0
    for i in range(n):
        pts.append(t)
        t += round(gaps_ms[i % len(gaps_ms)] / 1000 / TIME_BASE)
    return pts


def write_clip(
    path: Path,
    pts: Iterable[int],
    *,
    size: tuple[int, int] = (96, 64),
    frame: Callable[[int], np.ndarray] | None = None,
    audio: bool = True,
    colour: dict[str, int] | None = None,
    options: dict[str, str] | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> Path:
    """An H.264 (ultrafast, crf 12) clip at ``pts`` (1/90000 s) with a 440 Hz AAC mono track as long
    as the video. ``frame(i)`` draws frame i (``[H, W, 3]`` uint8; default: :func:`gradient`);
    ``colour``: colour tags (and matrix) of the video; ``options``: muxer options; ``codec``,
    ``pix_fmt``: another encoder (libx265, libvpx-vp9) or pixel format (yuv444p, yuv420p10le)."""
    import av

    width, height = size
    pts = list(pts)
    frame = frame or (lambda i: gradient(width, height, i))
    settings = {
        "libx264": {"preset": "ultrafast", "crf": "12"},
        "libx265": {"preset": "ultrafast", "crf": "12", "x265-params": "log-level=error"},
        "libvpx-vp9": {"crf": "12", "b": "0", "deadline": "realtime", "cpu-used": "8"},
    }.get(codec, {})
    with av.open(str(path), "w", options=options or {}) as out:
        video = out.add_stream(codec, rate=25, options=settings)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.time_base = TIME_BASE
        video.codec_context.time_base = TIME_BASE
        for key, value in (colour or {}).items():
            setattr(video.codec_context, key, value)
        sound = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i, p in enumerate(pts):
            f = av.VideoFrame.from_ndarray(frame(i), format="rgb24")
            if colour:
                f.colorspace = colour.get("colorspace", 2)
            f = f.reformat(format=pix_fmt, dst_color_range=(colour or {}).get("color_range") or None)
            f.pts, f.time_base = p, TIME_BASE
            for packet in video.encode(f):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            _write_sine(out, sound, float((pts[-1] + round(0.04 / TIME_BASE)) * TIME_BASE))
    return path


def _write_sine(out, sound, seconds: float, rate: int = 16000) -> None:
    import av

    chunk = 1024
    for s in range(0, int(seconds * rate), chunk):
        t = (s + np.arange(chunk)) / rate
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        a = av.AudioFrame.from_ndarray(wave, format="flt", layout="mono")
        a.sample_rate, a.pts = rate, s
        for packet in sound.encode(a):
            out.mux(packet)
    for packet in sound.encode(None):
        out.mux(packet)


def astronaut_face(eye_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's head scaled so its eyes are ``eye_distance`` px apart:
    ``(uint8 [S, S, 3], its 5 landmarks float32 [5, 2])``."""
    from PIL import Image
    from skimage import data

    x0, y0, side = 135, 30, 180  # a square around the head
    scale = eye_distance / float(np.linalg.norm(ASTRONAUT_LANDMARKS[1] - ASTRONAUT_LANDMARKS[0]))
    size = round(side * scale)
    crop = Image.fromarray(data.astronaut()[y0 : y0 + side, x0 : x0 + side]).resize((size, size), Image.LANCZOS)
    return np.asarray(crop), (ASTRONAUT_LANDMARKS - [x0, y0]) * scale


def face_scene(
    size: tuple[int, int] = (256, 192), *, eye_distance: float = 24.0, faces: int = 1
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A still scene ``float32 [H, W, 3]`` with ``faces`` astronaut heads side by side on a gradient,
    and each head's ``[x0, y0, x1, y1]`` square."""
    width, height = size
    head, _ = astronaut_face(eye_distance)
    s = head.shape[0]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    scene = np.stack([60 + 80 * xx / width, 90 + 40 * yy / height, np.full_like(xx, 110)], -1)
    boxes = []
    for k in range(faces):
        x, y = int((k + 0.5) * width / faces - s / 2), int(height / 2 - s / 2)
        scene[y : y + s, x : x + s] = head
        boxes.append(np.array([x, y, x + s, y + s]))
    return scene, boxes


def noisy(scene: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """``scene`` plus fresh Gaussian sensor noise of ``noise`` grey levels, as uint8."""
    return np.clip(scene + rng.normal(0, noise, scene.shape), 0, 255).round().astype(np.uint8)
